//! `anonymize` and `restore --anonymize` against real PostgreSQL and MariaDB servers, on the
//! demo data and 100,000 generated citizens: no original name, e-mail, phone or birth date
//! is left in the copy, keys and the reporting views' counts are kept, pseudonyms are stable
//! under one key and differ under another, an unruled personal column stops the copy, an
//! existing database is refused, a failed copy is dropped, and the key shows nowhere.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use common::*;
use hmac::{Hmac, KeyInit, Mac};

per_engine!(
    a_copy_holds_no_original_value_and_keeps_keys_and_counts,
    pseudonyms_are_stable_under_one_key_and_differ_under_another,
    an_unruled_personal_column_stops_the_copy_unless_allowed,
    an_existing_database_is_refused_and_a_failed_copy_is_dropped,
);

const KEY: &str = "clé-de-test-très-secrète-0123456789";
const OTHER_KEY: &str = "another-key-for-the-same-backup-42";

/// A database with the schema, the demo data and `extra` generated citizens, backups
/// configured, the project's privacy rules, and the key in the environment.
fn loaded(engine: Engine, extra: u32) -> Env {
    let mut env = Env::with_schema(engine);
    env.run(&["load-csv", "--all"]).success();
    if extra > 0 {
        generate_citizens(env.db(), extra);
    }
    configure(&env, "");
    env.set_env("MAIRIE_PRIVACY_KEY", KEY);
    env
}

/// The global config: backups in the env's directory, the project's `privacy:` section with
/// `more_rules` (lines of `    schema.table.column: strategy`) added to its rules.
fn configure(env: &Env, more_rules: &str) {
    let privacy = project_section("privacy");
    let privacy = privacy.replacen("  rules:\n", &format!("  rules:\n{more_rules}"), 1);
    env.write_global(&format!(
        "backup:\n  {}:\n    dir: {}\n    retention_days: 14\n    keep_min: 3\n{privacy}",
        env.engine.name(),
        env.path("backups").display()
    ));
}

/// Citizens with ids from 100,001, names and e-mails that no list holds, birth dates never
/// on January 1st.
fn generate_citizens(db: &Db, n: u32) {
    match db.engine() {
        Engine::Postgres => {
            db.query(&format!(
                "INSERT INTO metier.citoyens (id, civilite, nom, prenom, date_naissance, email,
                     telephone, adresse, code_postal, arrondissement)
                 SELECT 100000 + g, CASE WHEN g % 2 = 0 THEN 'M' ELSE 'Mme' END,
                        'Gennom' || g, 'Genprenom' || g,
                        make_date(1940 + g % 60, 2 + g % 11, 1 + g % 28),
                        'gen' || g || '@example.org', '06' || lpad(g::text, 8, '0'),
                        g || ' rue Générée', '130' || lpad((1 + g % 16)::text, 2, '0'), 1 + g % 16
                 FROM generate_series(1, {n}) g"
            ));
        }
        Engine::Mysql => {
            assert!(n <= 100_000);
            let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                          UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
                          UNION ALL SELECT 8 UNION ALL SELECT 9)";
            db.query(&format!(
                "INSERT INTO metier.citoyens (id, civilite, nom, prenom, date_naissance, email,
                     telephone, adresse, code_postal, arrondissement)
                 SELECT 100000 + g, IF(g % 2 = 0, 'M', 'Mme'),
                        CONCAT('Gennom', g), CONCAT('Genprenom', g),
                        STR_TO_DATE(CONCAT(1940 + g % 60, '-', 2 + g % 11, '-', 1 + g % 28), '%Y-%m-%d'),
                        CONCAT('gen', g, '@example.org'), CONCAT('06', LPAD(g, 8, '0')),
                        CONCAT(g, ' rue Générée'), CONCAT('130', LPAD(1 + g % 16, 2, '0')), 1 + g % 16
                 FROM (SELECT 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d AS g
                       FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f) s
                 WHERE g <= {n}"
            ));
        }
    }
}

/// A database of the env's server by name, dropped at the end of the test.
fn other_db(env: &Env, name: &str) -> Db {
    match env.engine {
        Engine::Postgres => Db::Pg(PgDb {
            name: name.to_string(),
        }),
        Engine::Mysql => Db::My(name.to_string()),
    }
}

fn copy_name(env: &Env, suffix: &str) -> String {
    format!("{}_{suffix}", env.db().name())
}

fn database_exists(env: &Env, name: &str) -> bool {
    let sql = match env.engine {
        Engine::Postgres => format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        Engine::Mysql => {
            format!("SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{name}'")
        }
    };
    env.db().scalar(&sql).as_deref() == Some("1")
}

fn take_backup(env: &Env) -> PathBuf {
    let out = env.run(&["--format", "json", "backup"]);
    out.success();
    env.path("backups")
        .join(out.json()["backups"][0]["file"].as_str().unwrap())
}

/// Every value of a column, as text.
fn values(db: &Db, table: &str, column: &str) -> BTreeSet<String> {
    db.query(&format!(
        "SELECT {column} FROM {} WHERE {column} IS NOT NULL",
        db.table(table)
    ))
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten())
    .collect()
}

/// id -> column, as text.
fn by_id(db: &Db, table: &str, column: &str) -> HashMap<String, Option<String>> {
    db.query(&format!("SELECT id, {column} FROM {}", db.table(table)))
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone()))
        .collect()
}

fn view(db: &Db, sql: &str) -> Vec<Vec<Option<String>>> {
    db.query(sql)
}

fn hmac_hex(key: &str, value: &str) -> String {
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
    m.update(value.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn a_copy_holds_no_original_value_and_keeps_keys_and_counts(engine: Engine) {
    let env = loaded(engine, 100_000);
    let src = env.db();
    let backup = take_backup(&env);
    let name = copy_name(&env, "anon");
    let copy = other_db(&env, &name);
    let out = env.run(&[
        "--format",
        "json",
        "anonymize",
        "--into",
        &name,
        backup.to_str().unwrap(),
    ]);
    out.success().lacks(KEY);
    let j = out.json();
    assert_eq!(j["status"], "success");
    let a = &j["anonymized"];
    assert_eq!(a["into"], name.as_str());
    let fp = a["key_fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fp, hmac_hex(KEY, "mairie-dba key fingerprint")[..8]);
    let rules = a["rules"].as_array().unwrap();
    let rule = |c: &str| {
        rules
            .iter()
            .find(|r| r["column"] == c)
            .unwrap_or_else(|| panic!("{c} not in {rules:?}"))
    };
    assert_eq!(rule("metier.citoyens.nom")["strategy"], "fake");
    assert_eq!(rule("metier.citoyens.nom")["rows"], 100_300);
    assert_eq!(rule("metier.citoyens.email")["checked"], 1000);
    assert_eq!(rule("metier.rendez_vous.lieu")["strategy"], "keep");

    // No original value of a ruled column is anywhere in the copy's column.
    assert_eq!(copy.count("metier.citoyens"), 100_300);
    for column in ["nom", "prenom", "email", "telephone", "adresse"] {
        let before = values(src, "metier.citoyens", column);
        let after = values(&copy, "metier.citoyens", column);
        let kept: Vec<_> = before.intersection(&after).take(5).collect();
        assert!(
            kept.is_empty(),
            "{column}: originals left in the copy: {kept:?}"
        );
    }
    let before = by_id(src, "metier.citoyens", "date_naissance");
    let after = by_id(&copy, "metier.citoyens", "date_naissance");
    for (id, b) in &before {
        let (b, a) = (b.as_deref().unwrap(), after[id].as_deref().unwrap());
        assert_eq!(a, format!("{}-01-01", &b[..4]), "citizen {id}");
    }
    let emails = by_id(&copy, "metier.citoyens", "email");
    let originals = by_id(src, "metier.citoyens", "email");
    let e = originals["100001"].as_deref().unwrap();
    assert_eq!(
        emails["100001"].as_deref().unwrap(),
        format!("{}@anonyme.invalid", &hmac_hex(KEY, e)[..16])
    );
    let distinct: BTreeSet<_> = emails.values().flatten().collect();
    assert_eq!(distinct.len(), emails.values().flatten().count());
    let phones = values(&copy, "metier.citoyens", "telephone");
    assert!(
        phones.contains("0600XXXXXX"),
        "{:?}",
        phones.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(
        copy.count_where("metier.demandes", "commentaire IS NOT NULL"),
        0
    );
    assert_eq!(
        copy.count_where("metier.journal_audit", "details IS NOT NULL"),
        0
    );
    // The copy's journal has no row the pseudonymisation would have written.
    assert_eq!(
        copy.count("metier.journal_audit"),
        src.count("metier.journal_audit")
    );
    // The triggers the load set aside (MariaDB) or came after it (PostgreSQL) are all there,
    // and they work: a change in the copy is journaled.
    let triggers = |db: &Db| {
        db.scalar(match engine {
            Engine::Postgres => "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal",
            Engine::Mysql => {
                "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
            }
        })
    };
    assert_eq!(triggers(&copy), triggers(src));
    assert_ne!(triggers(&copy).as_deref(), Some("0"));
    let journal = copy.count("metier.journal_audit");
    let demande = copy
        .scalar(&format!(
            "SELECT min(id) FROM {}",
            copy.table("metier.demandes")
        ))
        .unwrap();
    copy.query(&format!(
        "UPDATE {} SET commentaire = 'essai' WHERE id = {demande}",
        copy.table("metier.demandes")
    ));
    assert!(copy.count("metier.journal_audit") > journal);

    // Every link holds; the reporting views count the same.
    for (child, col, parent) in [
        ("metier.demandes", "citoyen_id", "metier.citoyens"),
        ("metier.rendez_vous", "citoyen_id", "metier.citoyens"),
        ("metier.rendez_vous", "demande_id", "metier.demandes"),
    ] {
        let orphans = copy.scalar(&format!(
            "SELECT count(*) FROM {} c WHERE c.{col} IS NOT NULL AND NOT EXISTS
                 (SELECT 1 FROM {} p WHERE p.id = c.{col})",
            copy.table(child),
            copy.table(parent)
        ));
        assert_eq!(orphans.as_deref(), Some("0"), "{child}.{col}");
    }
    for sql in [
        "SELECT service_id, total FROM reporting.demandes_par_service ORDER BY service_id",
        "SELECT arrondissement, total, ouvertes FROM reporting.demandes_par_arrondissement ORDER BY arrondissement",
        "SELECT arrondissement, count(*) FROM metier.citoyens GROUP BY arrondissement ORDER BY arrondissement",
    ] {
        assert_eq!(view(src, sql), view(&copy, sql), "{sql}");
    }

    // The copy says what it is.
    let marker = copy.query(&format!(
        "SELECT backup_file, key_fingerprint, backup_sha256 FROM {}",
        copy.table("mairie_dba_anonymized")
    ));
    assert_eq!(marker.len(), 1);
    assert_eq!(
        marker[0][0].as_deref(),
        backup.file_name().and_then(|f| f.to_str())
    );
    assert_eq!(marker[0][1].as_deref(), Some(fp.as_str()));
    assert_eq!(marker[0][2].as_deref(), a["sha256"].as_str());

    // The table output lists the rules too, and never the key.
    let name2 = copy_name(&env, "anon2");
    let _copy2 = other_db(&env, &name2);
    let out = env.run(&["anonymize", "--latest", "--into", &name2]);
    out.success()
        .stdout_has("metier.citoyens.email")
        .stdout_has("email")
        .lacks(KEY);
}

fn pseudonyms_are_stable_under_one_key_and_differ_under_another(engine: Engine) {
    let mut env = loaded(engine, 0);
    take_backup(&env);
    let names: Vec<String> = ["k1", "k1b", "k2"]
        .iter()
        .map(|s| copy_name(&env, s))
        .collect();
    let copies: Vec<Db> = names.iter().map(|n| other_db(&env, n)).collect();
    env.run(&["anonymize", "--latest", "--into", &names[0]])
        .success();
    // The same copy through `restore --anonymize`.
    env.run(&["restore", "--latest", "--anonymize", "--into", &names[1]])
        .success()
        .lacks(KEY);
    env.set_env("MAIRIE_PRIVACY_KEY", OTHER_KEY);
    env.run(&[
        "--format",
        "json",
        "anonymize",
        "--latest",
        "--into",
        &names[2],
    ])
    .success()
    .lacks(OTHER_KEY);
    for column in ["nom", "prenom", "email", "adresse"] {
        let a = by_id(&copies[0], "metier.citoyens", column);
        let b = by_id(&copies[1], "metier.citoyens", column);
        let c = by_id(&copies[2], "metier.citoyens", column);
        assert_eq!(a, b, "{column}: the same key gave other values");
        let differ = a.iter().filter(|(id, v)| c[*id] != **v).count();
        assert!(
            differ * 10 >= a.len() * 8,
            "{column}: only {differ} of {} values differ under another key",
            a.len()
        );
    }
    let fp = |d: &Db| {
        d.scalar(&format!(
            "SELECT key_fingerprint FROM {}",
            d.table("mairie_dba_anonymized")
        ))
    };
    assert_eq!(fp(&copies[0]), fp(&copies[1]));
    assert_ne!(fp(&copies[0]), fp(&copies[2]));
}

fn an_unruled_personal_column_stops_the_copy_unless_allowed(engine: Engine) {
    let env = loaded(engine, 0);
    let db = env.db();
    db.query(&format!(
        "ALTER TABLE {} ADD COLUMN iban_versement varchar(40)",
        db.table("metier.citoyens")
    ));
    db.query(&format!(
        "ALTER TABLE {} ADD COLUMN note_agent varchar(200)",
        db.table("metier.demandes")
    ));
    db.query(&format!(
        "UPDATE {} SET note_agent = 'rappeler jean.dupont@example.org'",
        db.table("metier.demandes")
    ));
    take_backup(&env);
    let name = copy_name(&env, "unruled");
    let copy = other_db(&env, &name);
    let out = env.run(&["anonymize", "--latest", "--into", &name]);
    out.code(2)
        .stderr_has("metier.citoyens.iban_versement")
        .stderr_has("bank details")
        .stderr_has("metier.demandes.note_agent")
        .stderr_has("e-mail addresses")
        .stderr_has("--allow-unruled")
        .lacks(KEY);
    assert!(
        !database_exists(&env, &name),
        "the refused copy was left behind"
    );
    let out = env.run(&[
        "--format",
        "json",
        "anonymize",
        "--latest",
        "--into",
        &name,
        "--allow-unruled",
    ]);
    out.success().lacks(KEY);
    let unruled: Vec<String> = out.json()["anonymized"]["unruled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["column"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        unruled,
        vec![
            "metier.citoyens.iban_versement",
            "metier.demandes.note_agent"
        ]
    );
    assert_eq!(copy.count("metier.citoyens"), 300);
    // With a rule the column is pseudonymised, and nothing is reported.
    configure(
        &env,
        "    metier.demandes.note_agent: \"null\"\n    metier.citoyens.iban_versement: hash\n",
    );
    let name2 = copy_name(&env, "ruled");
    let copy2 = other_db(&env, &name2);
    let out = env.run(&[
        "--format",
        "json",
        "anonymize",
        "--latest",
        "--into",
        &name2,
    ]);
    out.success();
    assert_eq!(out.json()["anonymized"]["unruled"], serde_json::json!([]));
    assert_eq!(
        copy2.count_where("metier.demandes", "note_agent IS NOT NULL"),
        0
    );
}

fn an_existing_database_is_refused_and_a_failed_copy_is_dropped(engine: Engine) {
    let mut env = loaded(engine, 0);
    take_backup(&env);
    // An existing database, even an empty one, is never written to.
    let existing = copy_name(&env, "exists");
    let _e = other_db(&env, &existing);
    match engine {
        Engine::Postgres => {
            pg_query("postgres", &format!("CREATE DATABASE {existing}"));
        }
        Engine::Mysql => {
            my_query(None, &format!("CREATE DATABASE {existing}"));
        }
    }
    env.run(&["anonymize", "--latest", "--into", &existing])
        .code(2)
        .stderr_has("already exists");
    env.run(&["anonymize", "--latest", "--into", env.db().name()])
        .code(2)
        .stderr_has("already exists");
    assert_eq!(env.db().count("metier.citoyens"), 300);

    // A rule that cannot be applied fails after the restore: the new database goes.
    let name = copy_name(&env, "failed");
    let _f = other_db(&env, &name);
    configure(
        &env,
        "    metier.demandes.citoyen_id: hash\n    metier.demandes.statut: fake\n",
    );
    env.run(&["anonymize", "--latest", "--into", &name])
        .code(2)
        .stderr_has(
            "metier.demandes.citoyen_id: hash cannot apply to a column of a primary or foreign key",
        )
        .stderr_has("metier.demandes.statut: fake cannot tell")
        .stderr_has("dropped")
        .lacks(KEY);
    assert!(!database_exists(&env, &name));

    // Without the key nothing is created; a short key is refused.
    configure(&env, "");
    env.remove_env("MAIRIE_PRIVACY_KEY");
    env.run(&["anonymize", "--latest", "--into", &name])
        .code(2)
        .stderr_has("MAIRIE_PRIVACY_KEY");
    env.set_env("MAIRIE_PRIVACY_KEY", "short");
    env.run(&["anonymize", "--latest", "--into", &name])
        .code(2)
        .stderr_has("too short");
    assert!(!database_exists(&env, &name));
}
