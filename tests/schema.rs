//! `schema apply | status` against a real PostgreSQL server.

mod common;

use common::*;

/// A copy of the project's migrations in the test's directory, so a test may change them.
fn own_migrations(env: &Env) -> String {
    let dir = env.path("sql");
    std::fs::create_dir_all(dir.join("postgres")).unwrap();
    for e in std::fs::read_dir(project("sql/postgres")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join("postgres").join(e.file_name())).unwrap();
    }
    dir.display().to_string()
}

#[test]
fn apply_creates_the_model_and_a_second_apply_is_a_no_op() {
    let env = Env::pg();
    let out = env.run(&["schema", "apply", "--format", "json"]);
    out.success();
    let doc = out.json();
    assert_eq!(doc["status"], "success");
    let applied = doc["targets"][0]["applied"].as_array().unwrap();
    assert!(applied.len() >= 4, "{doc}");
    assert_eq!(applied[0]["file"], "V001__referentiel.sql");

    let db = env.db();
    assert_eq!(db.count("referentiel.arrondissements"), 16);
    for rel in [
        "metier.citoyens",
        "metier.demandes",
        "metier.rendez_vous",
        "metier.journal_audit",
    ] {
        assert_eq!(db.count(rel), 0, "{rel} exists and is empty");
    }
    assert_eq!(db.count("reporting.demandes_par_arrondissement"), 16);
    let hist = db.query(
        "SELECT version, length(checksum), success, applied_by, execution_ms >= 0 FROM public.mairie_dba_schema_history ORDER BY version",
    );
    assert_eq!(hist.len(), applied.len());
    assert_eq!(hist[0][0].as_deref(), Some("1"));
    assert_eq!(hist[0][1].as_deref(), Some("64"));
    assert_eq!(hist[0][2].as_deref(), Some("t"));
    assert_eq!(hist[0][3].as_deref(), Some("mairie"));

    let again = env.run(&["schema", "apply"]);
    again.success().stdout_has("schema is up to date");
    assert_eq!(
        db.count("public.mairie_dba_schema_history"),
        applied.len() as i64
    );
}

#[test]
fn dry_run_lists_and_changes_nothing() {
    let env = Env::pg();
    let out = env.run(&["schema", "apply", "--dry-run", "--format", "json"]);
    out.success();
    let doc = out.json();
    assert!(doc["targets"][0]["pending"].as_array().unwrap().len() >= 4);
    assert_eq!(
        env.db()
            .scalar("SELECT to_regclass('public.mairie_dba_schema_history') IS NULL"),
        Some("t".into())
    );
    assert_eq!(
        env.db()
            .scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'metier'"),
        Some("0".into())
    );
}

#[test]
fn status_reports_pending_then_applied() {
    let env = Env::pg();
    let before = env.run(&["schema", "status", "--format", "json"]);
    before.success();
    let states: Vec<String> = before.json()["targets"][0]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_string())
        .collect();
    assert!(states.iter().all(|s| s == "pending"), "{states:?}");
    env.run(&["schema", "apply"]).success();
    let after = env.run(&["schema", "status"]);
    after
        .success()
        .stdout_has("applied")
        .stdout_has("0 pending");
}

#[test]
fn a_modified_migration_blocks_apply_and_names_the_file() {
    let env = Env::pg();
    let sql = own_migrations(&env);
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .success();
    let f = env.path("sql/postgres/V002__metier.sql");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("\n-- an innocent-looking edit\n");
    std::fs::write(&f, text).unwrap();
    env.write(
        "sql/postgres/V099__later.sql",
        "CREATE TABLE metier.later (id int);\n",
    );

    let status = env.run(&[
        "schema",
        "status",
        "--migrations-dir",
        &sql,
        "--format",
        "json",
    ]);
    status.success();
    let migs = status.json()["targets"][0]["migrations"].clone();
    let v2 = migs
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == 2)
        .unwrap();
    assert_eq!(v2["state"], "modified");

    let out = env.run(&["schema", "apply", "--migrations-dir", &sql]);
    out.code(1)
        .stderr_has("V002__metier.sql was modified")
        .one_line_error();
    assert_eq!(
        env.db()
            .scalar("SELECT to_regclass('metier.later') IS NULL"),
        Some("t".into())
    );
}

#[test]
fn a_failing_migration_is_rolled_back_recorded_and_retried_once_fixed() {
    let env = Env::pg();
    let sql = own_migrations(&env);
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .success();
    env.write(
        "sql/postgres/V100__broken.sql",
        "CREATE TABLE metier.half_done (id int);\nCREATE TABL metier.oops (id int);\n",
    );
    let out = env.run(&["schema", "apply", "--migrations-dir", &sql]);
    out.code(1)
        .stderr_has("V100__broken.sql:2:")
        .stderr_has("syntax error at or near \"TABL\"");
    let db = env.db();
    assert_eq!(
        db.scalar("SELECT to_regclass('metier.half_done') IS NULL"),
        Some("t".into()),
        "rolled back"
    );
    assert_eq!(
        db.scalar("SELECT success FROM public.mairie_dba_schema_history WHERE version = 100"),
        Some("f".into())
    );
    let status = env.run(&["schema", "status", "--migrations-dir", &sql]);
    status.success().stdout_has("failed");

    env.write(
        "sql/postgres/V100__broken.sql",
        "CREATE TABLE metier.half_done (id int);\n",
    );
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .success();
    assert_eq!(
        db.scalar("SELECT success FROM public.mairie_dba_schema_history WHERE version = 100"),
        Some("t".into())
    );
    assert_eq!(db.count("metier.half_done"), 0);
}

#[test]
fn a_pending_migration_below_an_applied_one_is_refused() {
    let env = Env::pg();
    let sql = own_migrations(&env);
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .success();
    env.write("sql/postgres/V000__too_late.sql", "SELECT 1;\n");
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .code(1)
        .stderr_has("V000__too_late.sql is pending but version");
}

#[test]
fn concurrent_applies_take_turns_and_apply_each_migration_once() {
    let env = Env::pg();
    let sql = own_migrations(&env);
    // A slow first migration makes the two runs overlap.
    env.write("sql/postgres/V000__slow.sql", "SELECT pg_sleep(1);\n");
    let cfg = env.path("config_global.yml");
    let spawn = || {
        std::process::Command::new(BIN)
            .args([
                "-c",
                cfg.to_str().unwrap(),
                "schema",
                "apply",
                "--migrations-dir",
                &sql,
            ])
            .env("MAIRIE_PG_PASSWORD", password())
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let files = std::fs::read_dir(env.path("sql/postgres")).unwrap().count() as i64;
    assert_eq!(env.db().count("public.mairie_dba_schema_history"), files);
    let outputs = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    assert!(
        outputs.contains("schema is up to date"),
        "one run found the work done:\n{outputs}"
    );
}

#[test]
fn a_misnamed_migration_file_is_a_usage_error() {
    let env = Env::pg();
    let sql = own_migrations(&env);
    env.write("sql/postgres/add_index.sql", "SELECT 1;\n");
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .code(2)
        .stderr_has("add_index.sql: a migration file must be named V<version>__<description>.sql");
}
