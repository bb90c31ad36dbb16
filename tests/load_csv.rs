//! `load-csv` against real PostgreSQL and MariaDB servers — each test written once and run
//! on both: the good files, every bad input of the contract, and the rule that a failed file
//! leaves nothing behind.

mod common;

use common::*;

per_engine!(
    demo_datasets_load_in_foreign_key_order,
    header_maps_columns_in_any_order_and_subset,
    null_rules_unquoted_empty_quoted_empty_and_literal_null,
    french_open_data_windows_1252_semicolons_dmy_and_decimal_commas,
    utf16_with_bom_and_utf8_with_bom_load,
    truncate_replaces_and_several_files_each_commit_alone,
    multi_line_fields_do_not_shift_error_lines,
    server_side_errors_name_the_physical_line_and_column,
    too_long_values_and_bad_references_are_errors_never_truncation,
    bad_inputs_fail_with_one_clear_line_and_nothing_committed,
    usage_errors_exit_2,
    header_only_file_is_a_success_with_zero_rows,
    a_missing_table_is_named,
    no_header_maps_fields_in_table_order,
    a_bad_row_at_the_very_end_of_a_large_file_rolls_back_everything,
    endless_lines_and_giant_fields_stop_at_the_limit_with_memory_bounded,
    old_mac_files_ended_by_cr_alone_load_and_errors_name_their_lines,
    a_date_column_takes_a_midnight_timestamp_and_refuses_a_time_of_day,
    dos_exports_load_as_cp850_and_undefined_windows_1252_bytes_are_refused,
    a_bad_utf16_sequence_late_in_a_file_names_its_own_line,
    quoted_everything_exports_take_force_null,
    title_lines_null_tokens_trim_and_quoted_decimal_commas,
    a_reject_file_keeps_the_good_rows_up_to_max_errors,
    one_dst_rule_on_every_engine,
    truncate_of_a_referenced_table_says_it_deletes_and_why,
);

const CITOYENS_HEADER: &str =
    "id,civilite,nom,prenom,date_naissance,email,telephone,adresse,code_postal,arrondissement,quotient_familial\n";

fn citoyen(id: u32) -> String {
    format!(
        "{id},Mme,Estève,Hélène,1984-03-0{},h{id}@example.fr,0491000000,\"12, rue Paradis\",13006,6,812.40\n",
        1 + id % 9
    )
}

fn citoyens_csv(n: u32) -> String {
    let mut s = CITOYENS_HEADER.to_string();
    for i in 1..=n {
        s.push_str(&citoyen(i));
    }
    s
}

fn load(env: &Env, file: &str, extra: &[&str]) -> Run {
    let f = env.path(file).display().to_string();
    let mut args = vec!["load-csv", "--table", "metier.citoyens"];
    args.extend_from_slice(extra);
    args.push(&f);
    env.run(&args)
}

/// Runs a load that must fail: exit 1, a one-line error naming `needle`, nothing loaded.
fn fails(env: &Env, file: &str, extra: &[&str], needle: &str) -> Run {
    let out = load(env, file, extra);
    out.code(1).one_line_error().stderr_has(needle);
    assert_eq!(env.db().count("metier.citoyens"), 0, "nothing committed");
    out
}

fn demo_datasets_load_in_foreign_key_order(engine: Engine) {
    let env = Env::with_schema(engine);
    let out = env.run(&["load-csv", "--all", "--format", "json"]);
    out.success();
    let doc = out.json();
    assert_eq!(doc["status"], "success");
    let loads = doc["loads"].as_array().unwrap();
    assert_eq!(loads.len(), 5);
    for l in loads {
        for key in ["target", "table", "file", "rows", "bytes", "seconds"] {
            assert!(l.get(key).is_some(), "{key} in {l}");
        }
    }
    let db = env.db();
    assert_eq!(db.count("metier.citoyens"), 300);
    assert_eq!(db.count("metier.demandes"), 400);
    // The Windows-1252 file kept its accents and its decimal commas.
    assert!(db.count_where("metier.demandes", "commentaire LIKE '%é%'") > 0);
    assert!(db.count_where("metier.demandes", "montant_frais <> floor(montant_frais)") > 0);
    // Its local times were read as Europe/Paris: 03/01/2024 16:36 is 15:36 UTC.
    let utc = match engine {
        Engine::Postgres => "to_char(date_depot AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')",
        Engine::Mysql => "DATE_FORMAT(date_depot, '%Y-%m-%d %H:%i')",
    };
    assert_eq!(
        db.scalar(&format!(
            "SELECT {utc} FROM {} WHERE reference = 'DEM-2024-000001'",
            db.table("metier.demandes")
        )),
        Some("2024-01-03 15:36".into())
    );
    // Sequences were moved past the loaded ids.
    db.query(&format!(
        "INSERT INTO {} (civilite, nom, prenom, date_naissance, adresse, code_postal, arrondissement) VALUES ('M', 'Nouveau', 'Né', '2000-01-01', 'x', '13001', 1)",
        db.table("metier.citoyens")
    ));

    // Loading again collides on keys, fails as a whole and changes nothing.
    env.run(&["load-csv", "--all"])
        .code(1)
        .stderr_has(match engine {
            Engine::Postgres => "duplicate key",
            Engine::Mysql => "Duplicate entry",
        });
    assert_eq!(db.count("metier.citoyens"), 301);
    // --truncate reloads cleanly.
    env.run(&["load-csv", "--all", "--truncate"]).success();
    assert_eq!(db.count("metier.citoyens"), 300);
}

fn header_maps_columns_in_any_order_and_subset(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write(
        "c.csv",
        "Arrondissement,code_postal,NOM,prenom,civilite,date_naissance,adresse\n3,13003,Müller,Zoé,Mme,2001-12-31,\"3, bd National\"\n",
    );
    load(&env, "c.csv", &[]).success().stdout_has("1 rows");
    let row = env
        .db()
        .query("SELECT nom, prenom, arrondissement, CASE WHEN email IS NULL THEN 'null' ELSE 'set' END, adresse FROM metier.citoyens");
    assert_eq!(
        row[0],
        ["Müller", "Zoé", "3", "null", "3, bd National"]
            .map(|s| Some(s.to_string()))
            .to_vec()
    );
}

fn null_rules_unquoted_empty_quoted_empty_and_literal_null(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write(
        "n.csv",
        format!(
            "{CITOYENS_HEADER}1,M,A,B,1990-01-01,,\"\",x,13001,1,\n2,M,A,B,1990-01-01,NULL,\\N,x,13001,1,\n"
        ),
    );
    load(&env, "n.csv", &[]).success();
    let rows = env
        .db()
        .query("SELECT email, telephone, quotient_familial FROM metier.citoyens ORDER BY id");
    assert_eq!(rows[0], vec![None, Some(String::new()), None]);
    assert_eq!(rows[1], vec![Some("NULL".into()), Some("\\N".into()), None]);

    let env = Env::with_schema(engine);
    env.write(
        "n.csv",
        format!("{CITOYENS_HEADER}1,M,A,B,1990-01-01,NA,\"NA\",x,13001,1,NA\n"),
    );
    load(&env, "n.csv", &["--null", "NA"]).success();
    let rows = env
        .db()
        .query("SELECT email, telephone, quotient_familial FROM metier.citoyens");
    assert_eq!(rows[0], vec![None, Some("NA".into()), None]);
}

fn french_open_data_windows_1252_semicolons_dmy_and_decimal_commas(engine: Engine) {
    let env = Env::with_schema(engine);
    let text = "id;civilite;nom;prenom;date_naissance;adresse;code_postal;arrondissement;quotient_familial\r\n\
                1;Mme;Lefèvre;Françoise;31/12/1950;\"5; place Castellane\";13006;6;1 234,56\r\n";
    let (bytes, _, bad) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!bad);
    env.write("w.csv", bytes);
    load(
        &env,
        "w.csv",
        &[
            "--delimiter",
            ";",
            "--encoding",
            "windows-1252",
            "--date-order",
            "dmy",
            "--decimal-comma",
        ],
    )
    .success();
    let db = env.db();
    let r = db.query(&format!(
        "SELECT nom, prenom, date_naissance, adresse, quotient_familial FROM {}",
        db.table("metier.citoyens")
    ));
    assert_eq!(
        r[0],
        [
            "Lefèvre",
            "Françoise",
            "1950-12-31",
            "5; place Castellane",
            "1234.56"
        ]
        .map(|s| Some(s.to_string()))
        .to_vec()
    );
}

fn utf16_with_bom_and_utf8_with_bom_load(engine: Engine) {
    let env = Env::with_schema(engine);
    let text = citoyens_csv(2);
    let mut utf16 = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    env.write("u16.csv", utf16);
    load(&env, "u16.csv", &[]).success();
    let mut utf8 = vec![0xEF, 0xBB, 0xBF];
    utf8.extend_from_slice(citoyens_csv(4).as_bytes());
    env.write("u8.csv", utf8);
    load(&env, "u8.csv", &["--truncate"]).success();
    assert_eq!(env.db().count("metier.citoyens"), 4);
    assert_eq!(
        env.db()
            .scalar("SELECT prenom FROM metier.citoyens WHERE id = 1"),
        Some("Hélène".into())
    );
}

fn truncate_replaces_and_several_files_each_commit_alone(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write("a.csv", citoyens_csv(3));
    load(&env, "a.csv", &[]).success();
    let mut bad = String::from(CITOYENS_HEADER);
    bad.push_str(&citoyen(10));
    bad.push_str("11,M,A,B,not-a-date,,,x,13001,1,\n");
    env.write("bad.csv", bad);
    let mut good = String::from(CITOYENS_HEADER);
    good.push_str(&citoyen(20));
    env.write("good.csv", good);
    let out = env.run(&[
        "load-csv",
        "--table",
        "metier.citoyens",
        "--truncate",
        "--format",
        "json",
        env.path("bad.csv").to_str().unwrap(),
        env.path("good.csv").to_str().unwrap(),
    ]);
    out.code(1);
    let doc = out.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["loads"][0]["status"], "failed");
    assert_eq!(doc["loads"][1]["status"], "success");
    assert_eq!(doc["loads"][1]["rows"], 1);
    // The failed file left nothing; the table holds exactly the file that loaded.
    assert_eq!(env.db().count("metier.citoyens"), 1);
    assert_eq!(
        env.db().scalar("SELECT id FROM metier.citoyens"),
        Some("20".into())
    );
}

fn multi_line_fields_do_not_shift_error_lines(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write(
        "m.csv",
        format!(
            "{CITOYENS_HEADER}1,M,A,B,1990-01-01,,,\"Bâtiment C\nescalier 2\",13001,1,\n2,M,A,B,1990-13-01,,,x,13001,1,\n"
        ),
    );
    fails(
        &env,
        "m.csv",
        &[],
        "m.csv:4: column date_naissance: invalid date \"1990-13-01\"",
    );
}

fn old_mac_files_ended_by_cr_alone_load_and_errors_name_their_lines(engine: Engine) {
    let env = Env::with_schema(engine);
    // Lines ended by CR alone, as old Mac exports: read as lines, not as one giant line.
    env.write("mac.csv", citoyens_csv(3).replace('\n', "\r"));
    load(&env, "mac.csv", &[]).success();
    assert_eq!(env.db().count("metier.citoyens"), 3);
    let db = env.db();
    let r = db.query(&format!(
        "SELECT nom FROM {} WHERE id = 3",
        db.table("metier.citoyens")
    ));
    assert_eq!(r[0][0].as_deref(), Some("Estève"), "no CR left in a value");
    // A quoted field over two lines counts as two: the bad date is on physical line 4.
    let env = Env::with_schema(engine);
    env.write(
        "mac_bad.csv",
        format!(
            "{CITOYENS_HEADER}1,M,A,B,1990-01-01,,,\"Bâtiment C\nescalier 2\",13001,1,\n2,M,A,B,1990-13-01,,,x,13001,1,\n"
        )
        .replace('\n', "\r"),
    );
    fails(
        &env,
        "mac_bad.csv",
        &[],
        "mac_bad.csv:4: column date_naissance: invalid date \"1990-13-01\"",
    );
}

fn a_date_column_takes_a_midnight_timestamp_and_refuses_a_time_of_day(engine: Engine) {
    let env = Env::with_schema(engine);
    // The Interior ministry's birth dates.
    env.write(
        "naissances.csv",
        format!("{CITOYENS_HEADER}1,M,A,B,1955-05-02 00:00:00+00,,,x,13001,1,\n"),
    );
    load(&env, "naissances.csv", &[]).success();
    let db = env.db();
    let r = db.query(&format!(
        "SELECT date_naissance FROM {}",
        db.table("metier.citoyens")
    ));
    assert_eq!(r[0][0].as_deref(), Some("1955-05-02"));
    let env = Env::with_schema(engine);
    env.write(
        "heure.csv",
        format!(
            "{CITOYENS_HEADER}1,M,A,B,1955-05-02 00:00:00+00,,,x,13001,1,\n2,M,A,B,1955-05-02 08:15:00+00,,,x,13001,1,\n"
        ),
    );
    fails(
        &env,
        "heure.csv",
        &[],
        "heure.csv:3: column date_naissance: \"1955-05-02 08:15:00+00\" has a time of day (08:15:00) but the column is a date",
    );
}

fn dos_exports_load_as_cp850_and_undefined_windows_1252_bytes_are_refused(engine: Engine) {
    // Montpellier's school headcounts: code page 850, where 0x90 is É.
    let mut bytes = CITOYENS_HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"1,M,MOUNI\x90,Ren\x82,1990-01-01,,,x,13001,1,\n");
    bytes.extend_from_slice(b"2,M,A,B,1990-01-01,,,x,13001,1,\n");
    let env = Env::with_schema(engine);
    env.write("dos.csv", bytes.clone());
    fails(
        &env,
        "dos.csv",
        &["--encoding", "windows-1252"],
        "dos.csv:2: byte 0x90 is not defined in Windows-1252",
    )
    .stderr_has("--encoding cp850");
    load(&env, "dos.csv", &["--encoding", "cp850"]).success();
    let db = env.db();
    let r = db.query(&format!(
        "SELECT nom, prenom FROM {} WHERE id = 1",
        db.table("metier.citoyens")
    ));
    assert_eq!(r[0][0].as_deref(), Some("MOUNIÉ"));
    assert_eq!(r[0][1].as_deref(), Some("René"));
}

fn a_bad_utf16_sequence_late_in_a_file_names_its_own_line(engine: Engine) {
    let env = Env::with_schema(engine);
    let text = citoyens_csv(6000);
    let mut utf16 = vec![0xFF, 0xFE];
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i + 1 == 5000 {
            // A lone high surrogate on physical line 5000.
            utf16.extend_from_slice(&0xD800u16.to_le_bytes());
        }
        for u in line.encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
    }
    env.write("u16.csv", utf16);
    fails(
        &env,
        "u16.csv",
        &[],
        "u16.csv:5000: invalid UTF-16LE byte sequence",
    );
}

fn server_side_errors_name_the_physical_line_and_column(engine: Engine) {
    let env = Env::with_schema(engine);
    // Line 3 holds a number the server refuses; the client passes it through untouched.
    env.write(
        "s.csv",
        format!("{CITOYENS_HEADER}1,M,A,B,1990-01-01,,,x,13001,1,\n2,M,A,B,1990-01-01,,,x,13001,1,douze\n"),
    );
    fails(
        &env,
        "s.csv",
        &[],
        match engine {
            Engine::Postgres => {
                "s.csv:3: column quotient_familial: invalid input syntax for type numeric"
            }
            Engine::Mysql => "s.csv:3: column quotient_familial:",
        },
    );
    env.write(
        "d.csv",
        format!(
            "{CITOYENS_HEADER}{}{}{}",
            citoyen(1),
            citoyen(2),
            citoyen(1)
        ),
    );
    fails(
        &env,
        "d.csv",
        &[],
        match engine {
            Engine::Postgres => "d.csv:4: duplicate key value violates unique constraint",
            Engine::Mysql => "Duplicate entry '1'",
        },
    );
}

fn too_long_values_and_bad_references_are_errors_never_truncation(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write(
        "long.csv",
        format!(
            "{CITOYENS_HEADER}{}1,M,A,B,1990-01-01,,,x,130011,1,\n",
            citoyen(9)
        ),
    );
    fails(
        &env,
        "long.csv",
        &[],
        match engine {
            Engine::Postgres => {
                "long.csv:3: column code_postal: value too long for type character(5)"
            }
            Engine::Mysql => "long.csv:3: column code_postal:",
        },
    );
    env.write(
        "fk.csv",
        format!("{CITOYENS_HEADER}1,M,A,B,1990-01-01,,,x,13001,99,\n"),
    );
    fails(&env, "fk.csv", &[], "foreign key");
    env.write(
        "ck.csv",
        format!("{CITOYENS_HEADER}1,Dr,A,B,1990-01-01,,,x,13001,1,\n"),
    );
    fails(
        &env,
        "ck.csv",
        &[],
        match engine {
            Engine::Postgres => "violates check constraint",
            Engine::Mysql => "CONSTRAINT",
        },
    );
}

fn bad_inputs_fail_with_one_clear_line_and_nothing_committed(engine: Engine) {
    let env = Env::with_schema(engine);
    fails(
        &env,
        "missing.csv",
        &[],
        "missing.csv: cannot read: no such file",
    );
    std::fs::create_dir_all(env.path("adir")).unwrap();
    fails(&env, "adir", &[], "is a directory");
    env.write("empty.csv", "");
    fails(&env, "empty.csv", &[], "empty.csv: file is empty");
    env.write(
        "extra.csv",
        format!(
            "{CITOYENS_HEADER}{}1,M,A,B,1990-01-01,,,x,13001,1,,extra\n",
            citoyen(5)
        ),
    );
    fails(
        &env,
        "extra.csv",
        &[],
        "extra.csv:3: expected 11 fields, found 12 (extra field",
    );
    env.write("short.csv", format!("{CITOYENS_HEADER}1,M,A\n"));
    fails(
        &env,
        "short.csv",
        &[],
        "short.csv:2: expected 11 fields, found 3 (missing field; first missing: prenom)",
    );
    env.write(
        "quote.csv",
        format!(
            "{CITOYENS_HEADER}{}1,M,\"open,B,1990-01-01,,,x,13001,1,\n",
            citoyen(7)
        ),
    );
    fails(
        &env,
        "quote.csv",
        &[],
        "quote.csv:3: unterminated quoted field",
    );
    let mut latin = CITOYENS_HEADER.as_bytes().to_vec();
    latin.extend_from_slice(b"1,M,Est\xe8ve,B,1990-01-01,,,x,13001,1,\n");
    env.write("latin.csv", latin);
    fails(
        &env,
        "latin.csv",
        &["--encoding", "utf-8"],
        "latin.csv:2: column nom: invalid UTF-8",
    );
    env.write(
        "date.csv",
        format!("{CITOYENS_HEADER}1,M,A,B,31/12/1990,,,x,13001,1,\n"),
    );
    fails(
        &env,
        "date.csv",
        &[],
        "date.csv:2: column date_naissance: invalid date \"31/12/1990\"",
    );
    env.write(
        "num.csv",
        format!(
            "{}1;M;A;B;1990-01-01;;;x;13001;1;12.5\n",
            CITOYENS_HEADER.replace(',', ";")
        ),
    );
    fails(
        &env,
        "num.csv",
        &["--decimal-comma", "--delimiter", ";"],
        "num.csv:2: column quotient_familial: number \"12.5\" has a '.' but --decimal-comma was given",
    );
    env.write("hdr.csv", "id,nom,surname\n1,A,B\n");
    fails(
        &env,
        "hdr.csv",
        &[],
        "hdr.csv:1: unknown column \"surname\" in header (the table has: id, civilite, nom",
    );
}

fn usage_errors_exit_2(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write("c.csv", citoyens_csv(1));
    load(&env, "c.csv", &["--delimiter", ";;"])
        .code(2)
        .stderr_has("--delimiter");
    load(&env, "c.csv", &["--dst", "later"])
        .code(2)
        .stderr_has("--timezone");
    load(&env, "c.csv", &["--reject-file", "r.csv"])
        .code(2)
        .stderr_has("--max-errors");
    load(&env, "c.csv", &["--force-null", "email,,nom"])
        .code(2)
        .stderr_has("--force-null");
    let input = env.path("c.csv").display().to_string();
    load(
        &env,
        "c.csv",
        &["--reject-file", &input, "--max-errors", "1"],
    )
    .code(2)
    .stderr_has("is one of the files to load");
    assert_eq!(env.db().count("metier.citoyens"), 0);
    let out = env.run(&[
        "load-csv",
        "--table",
        "a.b.c",
        env.path("c.csv").to_str().unwrap(),
    ]);
    out.code(2).stderr_has("expected SCHEMA.TABLE");
}

fn header_only_file_is_a_success_with_zero_rows(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write("h.csv", CITOYENS_HEADER);
    let out = load(&env, "h.csv", &["--format", "json"]);
    out.success();
    assert_eq!(out.json()["loads"][0]["rows"], 0);
}

fn a_missing_table_is_named(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write("c.csv", citoyens_csv(1));
    let f = env.path("c.csv").display().to_string();
    env.run(&["load-csv", "--table", "metier.nope", &f])
        .code(1)
        .one_line_error()
        .stderr_has("table metier.nope does not exist");
}

fn no_header_maps_fields_in_table_order(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write(
        "nh.csv",
        "1|M|Roux|Noël|1970-07-14|||x|13007|7||2026-01-01 10:00:00+01\n",
    );
    load(&env, "nh.csv", &["--no-header", "--delimiter", "|"]).success();
    assert_eq!(
        env.db().scalar("SELECT prenom FROM metier.citoyens"),
        Some("Noël".into())
    );
}

fn a_bad_row_at_the_very_end_of_a_large_file_rolls_back_everything(engine: Engine) {
    let env = Env::with_schema(engine);
    let mut s = citoyens_csv(20_000);
    s.push_str("20001,M,A,B,1990-02-30,,,x,13001,1,\n");
    env.write("big.csv", s);
    fails(
        &env,
        "big.csv",
        &[],
        "big.csv:20002: column date_naissance: invalid date \"1990-02-30\"",
    );
}

/// Runs a load and returns it with the peak resident memory of the binary, in MiB (from
/// `wait4`, which reports on that one child).
#[allow(clippy::zombie_processes)] // waited by wait4, which std does not offer
fn load_measured(env: &Env, file: &str, extra: &[&str]) -> (Run, f64) {
    use std::io::Read;
    use std::process::Stdio;
    let f = if file.starts_with('/') {
        file.to_string()
    } else {
        env.path(file).display().to_string()
    };
    let mut args = vec!["load-csv", "--table", "metier.citoyens"];
    args.extend_from_slice(extra);
    args.push(&f);
    let mut child = env
        .command(&[], &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mairie-dba");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: the pid is our own unwaited child; wait4 fills status and usage.
    let usage = unsafe {
        let pid = libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr());
        assert_eq!(pid, child.id() as i32);
        usage.assume_init()
    };
    let run = Run {
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    let rss = usage.ru_maxrss as f64 / 1024.0;
    eprintln!("{file} {extra:?}: peak RSS {rss:.1} MiB");
    (run, rss)
}

/// Writes `len` bytes of `byte` into a FIFO from a thread (as a pipe from another program
/// would): nothing of the size ever sits on disk.
fn fifo_of(
    env: &Env,
    name: &str,
    head: &'static [u8],
    byte: u8,
    len: usize,
) -> std::thread::JoinHandle<()> {
    let path = env.path(name);
    let c = std::ffi::CString::new(path.display().to_string()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::thread::spawn(move || {
        use std::io::Write;
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
            return;
        };
        if f.write_all(head).is_err() {
            return;
        }
        let block = vec![byte; 1 << 20];
        for _ in 0..len / block.len() {
            if f.write_all(&block).is_err() {
                return; // the reader stopped, as it should
            }
        }
    })
}

fn endless_lines_and_giant_fields_stop_at_the_limit_with_memory_bounded(engine: Engine) {
    let env = Env::with_schema(engine);
    // /dev/zero: one endless line of NUL bytes.
    let (out, rss) = load_measured(&env, "/dev/zero", &[]);
    out.code(1)
        .one_line_error()
        .stderr_has("/dev/zero:1: field 1 is larger than --max-field-size (64.00 MiB)");
    assert!(rss < 64.0 + 48.0, "peak RSS {rss:.0} MiB on /dev/zero");
    assert!(out.stderr.len() < 2048, "short error: {}", out.stderr.len());

    // A 1 GiB header line without a line break: the error quotes none of it.
    let w = fifo_of(&env, "header.csv", b"", b'a', 1 << 30);
    let (out, rss) = load_measured(&env, "header.csv", &["--max-field-size", "16MiB"]);
    w.join().unwrap();
    out.code(1)
        .one_line_error()
        .stderr_has("header.csv:1: field 1 is larger than --max-field-size (16.00 MiB)");
    assert!(
        out.stderr.len() < 2048,
        "short error: {} bytes",
        out.stderr.len()
    );
    assert!(rss < 64.0, "peak RSS {rss:.0} MiB on a 1 GiB header line");

    // A 1 GiB quoted field in a data row: named by its line and column.
    let w = fifo_of(
        &env,
        "field.csv",
        b"id,nom,prenom,civilite\n1,\"",
        b'b',
        1 << 30,
    );
    let (out, rss) = load_measured(&env, "field.csv", &["--max-field-size", "16MiB"]);
    w.join().unwrap();
    out.code(1)
        .one_line_error()
        .stderr_has("field.csv:2")
        .stderr_has("nom")
        .stderr_has("field 2 is larger than --max-field-size (16.00 MiB)");
    assert!(rss < 64.0, "peak RSS {rss:.0} MiB on a 1 GiB field");
    assert_eq!(env.db().count("metier.citoyens"), 0, "nothing committed");

    // A bad value is quoted short and with its control characters escaped.
    env.write(
        "esc.csv",
        format!(
            "id,nom,prenom,civilite,date_naissance\n1,A,B,M,\"{}[2J{}\"\n",
            '\u{1b}',
            "9".repeat(5000)
        ),
    );
    let out = load(&env, "esc.csv", &[]);
    out.code(1).one_line_error().stderr_has("\\u{1b}[2J");
    assert!(!out.stderr.contains('\u{1b}'), "raw escape echoed");
    assert!(
        out.stderr.len() < 1024,
        "short error: {} bytes",
        out.stderr.len()
    );
    // Bad sizes are usage errors.
    load(&env, "esc.csv", &["--max-field-size", "lots"])
        .code(2)
        .stderr_has("--max-field-size `lots`");
}

fn quoted_everything_exports_take_force_null(engine: Engine) {
    let env = Env::with_schema(engine);
    // As the Culture ministry's Joconde export: every field quoted, missing values too.
    let q = |fields: &[&str]| {
        fields
            .iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(",")
            + "\n"
    };
    let mut text = CITOYENS_HEADER.to_string();
    text.push_str(&q(&[
        "1",
        "M",
        "A",
        "B",
        "1990-01-01",
        "",
        "",
        "x",
        "13001",
        "1",
        "",
    ]));
    text.push_str(&q(&[
        "2",
        "Mme",
        "C",
        "D",
        "1991-02-03",
        "c@example.fr",
        "ND",
        "y",
        "13002",
        "2",
        "12.5",
    ]));
    env.write("joconde.csv", &text);
    // Without it a quoted empty field is an empty string, which is no number.
    fails(
        &env,
        "joconde.csv",
        &[],
        "joconde.csv:2: column quotient_familial",
    );
    fails(
        &env,
        "joconde.csv",
        &["--force-null", "nope"],
        "--force-null: no column \"nope\" in the table",
    );
    load(
        &env,
        "joconde.csv",
        &["--force-null", "email, QUOTIENT_FAMILIAL", "--null", "ND"],
    )
    .success();
    let db = env.db();
    let rows = db.query(&format!(
        "SELECT email, telephone, quotient_familial FROM {} ORDER BY id",
        db.table("metier.citoyens")
    ));
    // telephone is not forced: its quoted empty stays a string, its quoted ND a value.
    assert_eq!(rows[0], vec![None, Some(String::new()), None]);
    assert_eq!(rows[1][1].as_deref(), Some("ND"));

    let env = Env::with_schema(engine);
    env.write("joconde.csv", &text);
    load(&env, "joconde.csv", &["--force-null", "*", "--null", "ND"]).success();
    let db = env.db();
    let rows = db.query(&format!(
        "SELECT email, telephone FROM {} ORDER BY id",
        db.table("metier.citoyens")
    ));
    assert_eq!(rows[0], vec![None, None]);
    assert_eq!(rows[1], vec![Some("c@example.fr".into()), None]);

    // The case of the issue: a missing date, quoted as everything else.
    let env = Env::with_schema(engine);
    env.run(&["load-csv", "--all"]).success();
    let text = "\"reference\",\"citoyen_id\",\"type_code\",\"service_id\",\"arrondissement\",\"statut\",\"date_depot\",\"date_cloture\"\n\
                \"DEM-X-1\",\"1\",\"PROPRETE_ENCOMBRANTS\",\"7\",\"15\",\"en_cours\",\"2024-03-01 10:00:00+01\",\"\"\n";
    env.write("demandes.csv", text);
    let f = env.path("demandes.csv").display().to_string();
    let load_demandes = |extra: &[&str]| {
        let mut args = vec!["load-csv", "--table", "metier.demandes"];
        args.extend_from_slice(extra);
        args.push(&f);
        env.run(&args)
    };
    load_demandes(&[])
        .code(1)
        .one_line_error()
        .stderr_has("demandes.csv:2: column date_cloture");
    load_demandes(&["--force-null", "date_cloture"]).success();
    let db = env.db();
    assert_eq!(
        db.query(&format!(
            "SELECT date_cloture FROM {} WHERE reference = 'DEM-X-1'",
            db.table("metier.demandes")
        )),
        vec![vec![None]]
    );
}

fn title_lines_null_tokens_trim_and_quoted_decimal_commas(engine: Engine) {
    let env = Env::with_schema(engine);
    // INSEE style: a title (with an unbalanced quote) and a source line before the header;
    // padded fields; `ND` and `-` for missing values; a decimal comma quoted because the
    // delimiter is a comma; a blank line, which is skipped.
    let text = format!(
        "Population \"légale 2024\nSource : INSEE, RP 2021\n{CITOYENS_HEADER}\
         1 , M ,  Estève , Hélène ,1984-03-01,ND, - ,\"12, rue Paradis\",13006, 6 ,\" 812,40 \"\n\
         \n\
         2,Mme,A,B,1990-01-01,-,ND,x,13001,1,ND\n"
    );
    env.write("insee.csv", &text);
    let opts = [
        "--skip-lines",
        "2",
        "--null",
        "ND",
        "--null",
        "-",
        "--trim",
        "--decimal-comma",
    ];
    load(&env, "insee.csv", &opts).success();
    let db = env.db();
    let rows = db.query(&format!(
        "SELECT nom, prenom, email, telephone, arrondissement, quotient_familial FROM {} ORDER BY id",
        db.table("metier.citoyens")
    ));
    assert_eq!(
        rows[0],
        vec![
            Some("Estève".into()),
            Some("Hélène".into()),
            None,
            None,
            Some("6".into()),
            Some("812.40".into())
        ]
    );
    assert_eq!(rows[1][2..4], [None, None]);
    assert_eq!(rows[1][5], None);

    // Errors keep naming physical lines, title lines counted.
    let env = Env::with_schema(engine);
    env.write(
        "insee.csv",
        text.replace("2,Mme,A,B,1990-01-01", "2,Mme,A,B,1990-13-01"),
    );
    fails(
        &env,
        "insee.csv",
        &opts,
        "insee.csv:6: column date_naissance: invalid date",
    );
    // An unquoted decimal comma with ',' as delimiter is one field too many, and said so.
    env.write(
        "nq.csv",
        format!("{CITOYENS_HEADER}1,M,A,B,1990-01-01,,,x,13001,1,812,40\n"),
    );
    fails(
        &env,
        "nq.csv",
        &["--decimal-comma"],
        "nq.csv:2: expected 11 fields, found 12 (extra field; with --decimal-comma and ',' as delimiter, numbers must be quoted",
    );
    env.write("short.csv", "titre\n");
    fails(
        &env,
        "short.csv",
        &["--skip-lines", "3"],
        "the file has only 1 complete lines, and --skip-lines skips 3",
    );
}

fn a_reject_file_keeps_the_good_rows_up_to_max_errors(engine: Engine) {
    let env = Env::with_schema(engine);
    // 10,000 rows, 3 bad: one the reader refuses (no such date), one the server refuses
    // for its value, one for a foreign key (a row PostgreSQL does not name).
    let mut text = String::from(CITOYENS_HEADER);
    for i in 1..=10_000u32 {
        let row = match i {
            1234 => "1234,M,A,B,1990-02-30,,,x,13001,1,\n".to_string(),
            5000 => "5000,M,A,B,1990-01-01,,,x,13001,1,douze\n".to_string(),
            9999 => "9999,M,A,B,1990-01-01,,,x,13001,99,\n".to_string(),
            _ => citoyen(i),
        };
        text.push_str(&row);
    }
    env.write("c.csv", &text);
    let rejects = env.path("rejets.csv");
    let r = rejects.display().to_string();
    let out = load(
        &env,
        "c.csv",
        &["--reject-file", &r, "--max-errors", "3", "--format", "json"],
    );
    out.success();
    let doc = out.json();
    assert_eq!(doc["loads"][0]["rows"], 9_997);
    assert_eq!(doc["loads"][0]["rejected"], 3);
    assert_eq!(env.db().count("metier.citoyens"), 9_997);
    for id in ["1234", "5000", "9999"] {
        assert_eq!(
            env.db()
                .count_where("metier.citoyens", &format!("id = {id}")),
            0
        );
    }
    let file = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(lines.len(), 4, "{file}");
    assert_eq!(lines[0], "file,line,error,record");
    let c = env.path("c.csv").display().to_string();
    assert!(
        lines[1].starts_with(&format!("{c},1235,\"column date_naissance: invalid date")),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(",\"1234,M,A,B,1990-02-30,,,x,13001,1,\""),
        "the record as the file wrote it: {}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(&format!("{c},5001,"))
            && lines[2].contains("column quotient_familial"),
        "{}",
        lines[2]
    );
    assert!(lines[3].starts_with(&format!("{c},10000,")), "{}", lines[3]);
    assert!(
        lines[3].to_lowercase().contains("foreign key"),
        "{}",
        lines[3]
    );

    // One more than allowed: nothing committed, and the rejects so far are there to see.
    let env = Env::with_schema(engine);
    env.write("c.csv", &text);
    let rejects = env.path("rejets.csv");
    let r = rejects.display().to_string();
    let out = load(&env, "c.csv", &["--reject-file", &r, "--max-errors", "2"]);
    out.code(1).stderr_has(
        "more than 2 rows rejected (--max-errors 2), so nothing of the file was committed",
    );
    assert_eq!(env.db().count("metier.citoyens"), 0);
    let file = std::fs::read_to_string(&rejects).unwrap();
    assert_eq!(file.lines().count(), 4, "{file}");
    let leftovers: Vec<_> = std::fs::read_dir(env.path("."))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn one_dst_rule_on_every_engine(engine: Engine) {
    let header = CITOYENS_HEADER.trim_end().to_string() + ",date_inscription\n";
    let row = |id: u32, at: &str| format!("{id},M,A,B,01/01/1990,,,x,13001,1,,{at}\n");
    let utc_of = |env: &Env| {
        let db = env.db();
        let sql = match db.engine() {
            Engine::Postgres => format!(
                "SELECT to_char(date_inscription AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM {} ORDER BY id",
                db.table("metier.citoyens")
            ),
            Engine::Mysql => format!(
                "SELECT DATE_FORMAT(date_inscription, '%Y-%m-%d %H:%i') FROM {} ORDER BY id",
                db.table("metier.citoyens")
            ),
        };
        db.query(&sql)
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>()
    };
    let tz = ["--date-order", "dmy", "--timezone", "Europe/Paris"];
    let env = Env::with_schema(engine);
    env.write(
        "overlap.csv",
        format!(
            "{header}{}{}",
            row(1, "26/10/2024 23:00"),
            row(2, "27/10/2024 02:30")
        ),
    );
    fails(
        &env,
        "overlap.csv",
        &tz,
        "overlap.csv:3: column date_inscription: \"27/10/2024 02:30\" happened twice in Europe/Paris",
    );
    env.write("gap.csv", format!("{header}{}", row(1, "31/03/2024 02:30")));
    fails(
        &env,
        "gap.csv",
        &tz,
        "\"31/03/2024 02:30\" does not exist in Europe/Paris: the clocks went forward that night from UTC+01:00 to UTC+02:00",
    );
    if engine == Engine::Postgres {
        // Without --timezone, the session's own zone is judged by the same rule.
        let db = env.db();
        db.query(&format!(
            "ALTER DATABASE \"{}\" SET timezone = 'Europe/Paris'",
            db.name()
        ));
        fails(
            &env,
            "overlap.csv",
            &["--date-order", "dmy"],
            "\"27/10/2024 02:30\" happened twice in Europe/Paris",
        );
    }
    for (dst, expected) in [
        (
            "earlier",
            ["2024-10-27 00:30", "2024-03-31 00:30", "2024-07-01 10:00"],
        ),
        (
            "later",
            ["2024-10-27 01:30", "2024-03-31 01:30", "2024-07-01 10:00"],
        ),
    ] {
        let env = Env::with_schema(engine);
        env.write(
            "both.csv",
            format!(
                "{header}{}{}{}",
                row(1, "27/10/2024 02:30"),
                row(2, "31/03/2024 02:30"),
                row(3, "01/07/2024 12:00")
            ),
        );
        let mut args = tz.to_vec();
        args.extend(["--dst", dst]);
        load(&env, "both.csv", &args).success();
        assert_eq!(utc_of(&env), expected, "--dst {dst}");
    }
}

fn truncate_of_a_referenced_table_says_it_deletes_and_why(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write("a.csv", citoyens_csv(3));
    load(&env, "a.csv", &[]).success();
    env.write("b.csv", citoyens_csv(2));
    let out = load(&env, "b.csv", &["--truncate"]);
    out.success();
    out.stdout_has("emptied with DELETE, not TRUNCATE")
        .stdout_has("demandes");
    assert_eq!(env.db().count("metier.citoyens"), 2);
    let out = load(&env, "b.csv", &["--truncate", "--format", "json"]);
    out.success();
    let note = out.json()["loads"][0]["notes"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        note.starts_with("metier.citoyens: emptied with DELETE, not TRUNCATE:")
            && note.contains("by foreign key"),
        "{note}"
    );
    // Without --truncate there is nothing to say.
    env.write("c.csv", format!("{CITOYENS_HEADER}{}", citoyen(7)));
    let out = load(&env, "c.csv", &["--format", "json"]);
    out.success();
    assert!(out.json()["loads"][0].get("notes").is_none());
}
