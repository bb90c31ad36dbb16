//! How a CSV file is read: the options of `load-csv` and of a dataset entry of the config
//! (the same names on the command line and in YAML).

use clap::{Args, ValueEnum};

/// How to read a CSV file. Also deserialisable from a dataset entry of the config.
#[derive(Debug, Clone, Args)]
pub struct CsvOptions {
    /// Field delimiter (one character; `\t` or `tab` for a tab)
    #[arg(long, default_value = ",", value_name = "C")]
    pub delimiter: String,

    /// Quote character (one character)
    #[arg(long, default_value = "\"", value_name = "C")]
    pub quote: String,

    /// File encoding; `auto` honours a UTF-8 or UTF-16 BOM, else reads UTF-8
    #[arg(long, value_enum, default_value_t = EncodingArg::Auto)]
    pub encoding: EncodingArg,

    /// The first line is data, not a header (columns are then taken in table order)
    #[arg(long)]
    pub no_header: bool,

    /// An unquoted value that also means NULL, besides an unquoted empty field (repeat for
    /// several: --null NA --null ND)
    #[arg(long, value_name = "STR")]
    pub null: Vec<String>,

    /// Columns whose quoted empty field (or quoted --null value) is NULL too, as COPY's
    /// FORCE_NULL: COL,COL,… or `*` for every column
    #[arg(long, value_name = "COLS")]
    pub force_null: Option<String>,

    /// Physical lines to skip before the header (title lines of INSEE or ministry files)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub skip_lines: u64,

    /// Remove spaces and tabs around every field (quoted or not) before reading it
    #[arg(long)]
    pub trim: bool,

    /// Order of day, month and year in dates (`dmy` reads 31/12/2024)
    #[arg(long, value_enum, default_value_t = DateOrder::Ymd)]
    pub date_order: DateOrder,

    /// Numbers use a decimal comma (1234,56; spaces as thousands separators are allowed)
    #[arg(long)]
    pub decimal_comma: bool,

    /// Time zone of timestamps written without an offset (e.g. Europe/Paris)
    /// [default: the server's]
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,

    /// A local time that the clock change of --timezone makes ambiguous (it happened twice)
    /// or non-existent (skipped) is an error, unless this says which instant to take: the
    /// earlier or the later of the two it can mean
    #[arg(long, value_enum, value_name = "WHICH", requires = "timezone")]
    pub dst: Option<DstChoice>,

    /// The largest field or record read (e.g. 64MiB, 1G, 500000); past it the load fails at
    /// once, naming the line and column, so memory stays bounded whatever the file holds
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub max_field_size: String,
}

/// The default of `--max-field-size`.
pub const DEFAULT_MAX_FIELD_SIZE: &str = "64MiB";

/// `64MiB`, `1G`, `500000` as bytes (units are powers of 1024); at least 1 KiB.
pub fn parse_max_field_size(s: &str) -> Result<usize, String> {
    let cfg = parse_size::Config::new().with_binary();
    let n = cfg.parse_size(s).map_err(|e| {
        format!(
            "--max-field-size `{}`: {e} (write e.g. 64MiB or 1G)",
            s.escape_debug()
        )
    })?;
    if n < 1024 {
        return Err(format!("--max-field-size `{s}`: must be at least 1KiB"));
    }
    usize::try_from(n).map_err(|_| format!("--max-field-size `{s}`: too large"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncodingArg {
    /// A UTF-8 or UTF-16 BOM is honoured, else UTF-8
    Auto,
    /// UTF-8, with or without BOM; invalid bytes are an error
    #[value(name = "utf-8", alias = "utf8")]
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// ISO-8859-1 (read as its superset Windows-1252, as every browser does)
    #[value(alias = "iso-8859-1", alias = "latin-1")]
    #[serde(alias = "iso-8859-1", alias = "latin-1")]
    Latin1,
    /// Windows-1252 (cp1252), the usual encoding of French spreadsheets' CSV exports
    #[value(name = "windows-1252", alias = "cp1252")]
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
    /// UTF-16 with a BOM (little or big endian; little endian without BOM)
    #[value(name = "utf-16", alias = "utf16")]
    #[serde(rename = "utf-16", alias = "utf16")]
    Utf16,
    /// DOS code page 850 (Western Europe), as DOS-era exports are written
    #[value(name = "cp850", alias = "ibm850")]
    #[serde(rename = "cp850", alias = "ibm850")]
    Cp850,
    /// DOS code page 437 (the original IBM PC's)
    #[value(name = "cp437", alias = "ibm437")]
    #[serde(rename = "cp437", alias = "ibm437")]
    Cp437,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    /// 2024-12-31
    #[default]
    Ymd,
    /// 31/12/2024
    Dmy,
    /// 12/31/2024
    Mdy,
}

/// Which instant a local time means when a clock change makes it ambiguous or skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DstChoice {
    /// The earlier of the two instants (for 02:30 on the autumn night, the first one)
    Earlier,
    /// The later of the two instants
    Later,
}
