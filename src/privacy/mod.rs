//! Citizens' personal data: the `privacy:` and `erasure:` sections of the config, the
//! strategies of the rules, and the keyed hash they share.
//!
//! ```yaml
//! privacy:
//!   key_env: MAIRIE_PRIVACY_KEY        # the hashing key comes from this variable
//!   email_domain: anonyme.invalid      # the reserved domain of `email` values
//!   rules:
//!     metier.citoyens.nom: fake
//!     metier.citoyens.email: email
//!     metier.citoyens.date_naissance: generalize
//!   retention_years:                   # default 5 for every table with personal data
//!     metier.demandes: 5
//!   retention_columns:                 # what dates a row, beyond the mairie model's tables
//!     etat_civil.actes: date_acte
//! erasure:
//!   subject: metier.citoyens           # the table whose rows are the people
//!   tables:                            # what happens to the rows that belong to them
//!     metier.demandes: pseudonymize
//!     metier.rendez_vous: delete
//! ```

pub mod anonymize;
pub mod detect;
pub mod erase;
pub mod fake;
pub mod plan;
pub mod report;
pub mod retention;
pub mod transform;

use hmac::{Hmac, KeyInit, Mac};
use indexmap::IndexMap;
use serde::Deserialize;
use sha2::Sha256;

use crate::error::ConfigError;

/// The variable the hashing key is read from when `key_env` is not given.
pub const DEFAULT_KEY_ENV: &str = "MAIRIE_PRIVACY_KEY";
/// The domain of pseudonymised e-mail addresses: `.invalid` is reserved (RFC 2606), so no
/// message can ever reach one.
pub const DEFAULT_EMAIL_DOMAIN: &str = "anonyme.invalid";
/// Years a table's rows are kept when `retention_years` does not name it.
pub const DEFAULT_RETENTION_YEARS: u32 = 5;
/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// What becomes of a personal column in a pseudonymised copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// A plausible French value of the column's kind (first name, last name, street) from
    /// the lists shipped with the project, chosen by a keyed hash of the original.
    Fake,
    /// A keyed hash: the same input gives the same output, so joins and counts survive.
    Hash,
    /// NULL.
    Null,
    /// Coarser: a birth date to its year, an address to its arrondissement, a phone to its
    /// first digits.
    Generalize,
    /// A keyed hash at the reserved domain (`email_domain`).
    Email,
    /// Copied as it is (said so in the manifest).
    Keep,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Fake => "fake",
            Strategy::Hash => "hash",
            Strategy::Null => "null",
            Strategy::Generalize => "generalize",
            Strategy::Email => "email",
            Strategy::Keep => "keep",
        }
    }
}

/// A column named `schema.table.column`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnRef {
    pub schema: String,
    pub table: String,
    pub column: String,
}

impl ColumnRef {
    pub fn parse(s: &str) -> Option<ColumnRef> {
        let mut parts = s.split('.');
        let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [a, b, c].iter().any(|p| p.trim().is_empty()) {
            return None;
        }
        Some(ColumnRef {
            schema: a.to_string(),
            table: b.to_string(),
            column: c.to_string(),
        })
    }

    /// `schema.table`.
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.schema, self.table, self.column)
    }
}

/// The `privacy:` section, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyFile {
    #[serde(default)]
    pub key_env: Option<String>,
    #[serde(default)]
    pub email_domain: Option<String>,
    #[serde(default)]
    pub rules: IndexMap<String, Strategy>,
    #[serde(default)]
    pub retention_years: IndexMap<String, u32>,
    #[serde(default)]
    pub retention_columns: IndexMap<String, String>,
}

/// The `privacy:` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacySection {
    pub key_env: String,
    pub email_domain: String,
    /// In the order of the file.
    pub rules: Vec<(ColumnRef, Strategy)>,
    /// `schema.table` → years.
    pub retention_years: IndexMap<String, u32>,
    /// `schema.table` → the date or timestamp column that measures a row's age (beyond the
    /// mairie model's own, see [`retention::age_column`]).
    pub retention_columns: IndexMap<String, String>,
}

impl Default for PrivacySection {
    fn default() -> Self {
        PrivacySection {
            key_env: DEFAULT_KEY_ENV.to_string(),
            email_domain: DEFAULT_EMAIL_DOMAIN.to_string(),
            rules: Vec::new(),
            retention_years: IndexMap::new(),
            retention_columns: IndexMap::new(),
        }
    }
}

impl PrivacySection {
    /// Checks the section; `at` names the file for messages.
    pub fn from_file(f: PrivacyFile, at: &str) -> Result<PrivacySection, ConfigError> {
        let mut rules = Vec::with_capacity(f.rules.len());
        for (key, strategy) in f.rules {
            let c = ColumnRef::parse(&key).ok_or_else(|| {
                ConfigError::new(format!(
                    "{at}: privacy.rules: `{key}` is not SCHEMA.TABLE.COLUMN"
                ))
            })?;
            rules.push((c, strategy));
        }
        for (table, years) in &f.retention_years {
            if table.split('.').count() != 2 || table.split('.').any(|p| p.trim().is_empty()) {
                return Err(ConfigError::new(format!(
                    "{at}: privacy.retention_years: `{table}` is not SCHEMA.TABLE"
                )));
            }
            if !(1..=100).contains(years) {
                return Err(ConfigError::new(format!(
                    "{at}: privacy.retention_years.{table}: {years} is not a number of years \
                     (1 to 100)"
                )));
            }
        }
        for (table, column) in &f.retention_columns {
            if table.split('.').count() != 2 || table.split('.').any(|p| p.trim().is_empty()) {
                return Err(ConfigError::new(format!(
                    "{at}: privacy.retention_columns: `{table}` is not SCHEMA.TABLE"
                )));
            }
            if column.trim().is_empty() {
                return Err(ConfigError::new(format!(
                    "{at}: privacy.retention_columns.{table}: no column named"
                )));
            }
        }
        let key_env = f.key_env.unwrap_or_else(|| DEFAULT_KEY_ENV.to_string());
        if key_env.is_empty()
            || !key_env
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ConfigError::new(format!(
                "{at}: privacy.key_env: `{key_env}` is not an environment variable name"
            )));
        }
        let email_domain = f
            .email_domain
            .unwrap_or_else(|| DEFAULT_EMAIL_DOMAIN.to_string());
        if email_domain.is_empty()
            || !email_domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(ConfigError::new(format!(
                "{at}: privacy.email_domain: `{email_domain}` is not a domain name"
            )));
        }
        Ok(PrivacySection {
            key_env,
            email_domain,
            rules,
            retention_years: f.retention_years,
            retention_columns: f.retention_columns,
        })
    }

    /// The rule of a column, if any.
    pub fn rule(&self, c: &ColumnRef) -> Option<Strategy> {
        self.rules.iter().find(|(r, _)| r == c).map(|(_, s)| *s)
    }

    /// Years the rows of `schema.table` are kept.
    pub fn retention_of(&self, table: &str) -> u32 {
        self.retention_years
            .get(table)
            .copied()
            .unwrap_or(DEFAULT_RETENTION_YEARS)
    }

    /// The hashing key, from the environment. The error names the variable, never a value.
    pub fn key(&self) -> Result<PrivacyKey, ConfigError> {
        let v = std::env::var_os(&self.key_env).ok_or_else(|| {
            ConfigError::new(format!(
                "the privacy hashing key is read from ${}, which is not set",
                self.key_env
            ))
        })?;
        let bytes = v.into_encoded_bytes();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(ConfigError::new(format!(
                "${} is too short for a hashing key: at least {MIN_KEY_BYTES} bytes",
                self.key_env
            )));
        }
        Ok(PrivacyKey(bytes))
    }
}

/// What happens to a subject's rows in a table that belongs to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErasureAction {
    /// The rows are deleted.
    Delete,
    /// The rows are kept (for statistics) with their link to the subject and their
    /// personal columns pseudonymised.
    #[serde(alias = "pseudonymise")]
    Pseudonymize,
}

/// The `erasure:` section, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureFile {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub tables: IndexMap<String, ErasureAction>,
}

/// The `erasure:` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureSection {
    /// `schema.table` whose rows are the people.
    pub subject: String,
    /// `schema.table` → action; a table reached by foreign keys and not named here is
    /// deleted.
    pub tables: IndexMap<String, ErasureAction>,
}

impl Default for ErasureSection {
    fn default() -> Self {
        ErasureSection {
            subject: "metier.citoyens".to_string(),
            tables: IndexMap::new(),
        }
    }
}

impl ErasureSection {
    pub fn from_file(f: ErasureFile, at: &str) -> Result<ErasureSection, ConfigError> {
        let subject = f.subject.unwrap_or_else(|| "metier.citoyens".to_string());
        for t in std::iter::once(&subject).chain(f.tables.keys()) {
            if t.split('.').count() != 2 || t.split('.').any(|p| p.trim().is_empty()) {
                return Err(ConfigError::new(format!(
                    "{at}: erasure: `{t}` is not SCHEMA.TABLE"
                )));
            }
        }
        Ok(ErasureSection {
            subject,
            tables: f.tables,
        })
    }

    pub fn action_of(&self, table: &str) -> ErasureAction {
        self.tables
            .get(table)
            .copied()
            .unwrap_or(ErasureAction::Delete)
    }
}

/// The secret of keyed hashes. Its bytes never leave it but through [`PrivacyKey::hash`]
/// and [`PrivacyKey::mac`]; its Debug shows nothing.
#[derive(Clone)]
pub struct PrivacyKey(Vec<u8>);

impl std::fmt::Debug for PrivacyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivacyKey(…)")
    }
}

impl PrivacyKey {
    #[cfg(test)]
    pub fn from_bytes(b: &[u8]) -> PrivacyKey {
        PrivacyKey(b.to_vec())
    }

    /// HMAC-SHA256 of `value`.
    pub fn hash(&self, value: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// A prepared HMAC-SHA256 of this key, cloned for each value (the padded keys are
    /// computed once).
    pub fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// HMAC-SHA256 in lower-case hex.
    pub fn hash_hex(&self, value: &[u8]) -> String {
        hex::encode(self.hash(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_retention_are_checked_naming_the_key() {
        let f: PrivacyFile = serde_norway::from_str(
            "rules: {metier.citoyens.nom: fake, metier.citoyens.email: email}\nretention_years: {metier.demandes: 3}\n",
        )
        .unwrap();
        let p = PrivacySection::from_file(f, "c.yml").unwrap();
        let nom = ColumnRef::parse("metier.citoyens.nom").unwrap();
        assert_eq!(p.rule(&nom), Some(Strategy::Fake));
        assert_eq!(p.retention_of("metier.demandes"), 3);
        assert_eq!(p.retention_of("metier.rendez_vous"), 5);
        assert_eq!(p.key_env, "MAIRIE_PRIVACY_KEY");
        let bad: PrivacyFile = serde_norway::from_str("rules: {citoyens.nom: fake}\n").unwrap();
        let e = PrivacySection::from_file(bad, "c.yml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`citoyens.nom` is not SCHEMA.TABLE.COLUMN"),
            "{e}"
        );
        let bad: PrivacyFile =
            serde_norway::from_str("retention_years: {metier.demandes: 0}\n").unwrap();
        assert!(PrivacySection::from_file(bad, "c.yml").is_err());
        assert!(serde_norway::from_str::<PrivacyFile>("rules: {a.b.c: scramble}\n").is_err());
        let bad: PrivacyFile =
            serde_norway::from_str("retention_columns: {notes: ecrit_le}\n").unwrap();
        let e = PrivacySection::from_file(bad, "c.yml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("privacy.retention_columns: `notes` is not SCHEMA.TABLE"),
            "{e}"
        );
    }

    #[test]
    fn the_keyed_hash_is_hmac_sha256() {
        let k = PrivacyKey::from_bytes(&[7u8; 100]);
        let mut m = k.mac();
        m.update("Dupont Hélène".as_bytes());
        let prepared: [u8; 32] = m.finalize().into_bytes().into();
        assert_eq!(prepared, k.hash("Dupont Hélène".as_bytes()));
        // RFC 4231 test case 2.
        let k = PrivacyKey::from_bytes(b"Jefe");
        assert_eq!(
            k.hash_hex(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(format!("{k:?}"), "PrivacyKey(…)");
    }

    #[test]
    fn erasure_defaults_to_deleting_what_belongs_to_a_citizen() {
        let f: ErasureFile =
            serde_norway::from_str("tables: {metier.demandes: pseudonymise}\n").unwrap();
        let e = ErasureSection::from_file(f, "c.yml").unwrap();
        assert_eq!(e.subject, "metier.citoyens");
        assert_eq!(e.action_of("metier.demandes"), ErasureAction::Pseudonymize);
        assert_eq!(e.action_of("metier.rendez_vous"), ErasureAction::Delete);
    }
}
