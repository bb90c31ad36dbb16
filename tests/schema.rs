//! `schema apply | status` against real PostgreSQL and MariaDB servers, each test written
//! once and run on both.

mod common;

use common::*;

per_engine!(
    apply_creates_the_model_and_a_second_apply_is_a_no_op,
    dry_run_lists_and_changes_nothing,
    status_reports_pending_then_applied,
    a_modified_migration_blocks_apply_and_names_the_file,
    a_failing_migration_is_recorded_and_handled_as_the_engine_allows,
    a_pending_migration_below_an_applied_one_is_refused,
    concurrent_applies_take_turns_and_apply_each_migration_once,
    a_misnamed_migration_file_is_a_usage_error,
);

const HISTORY: &str = "mairie_dba_schema_history";

/// A copy of the project's migrations in the test's directory, so a test may change them.
fn own_migrations(env: &Env) -> String {
    let engine = env.engine.name();
    let dir = env.path("sql");
    std::fs::create_dir_all(dir.join(engine)).unwrap();
    for e in std::fs::read_dir(project(&format!("sql/{engine}"))).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(engine).join(e.file_name())).unwrap();
    }
    dir.display().to_string()
}

fn migration(env: &Env, name: &str, sql: &str) {
    env.write(&format!("sql/{}/{name}", env.engine.name()), sql);
}

/// A table name in the model's own spelling on each engine.
fn model_table(engine: Engine, schema: &str, name: &str) -> String {
    match engine {
        Engine::Postgres => format!("{schema}.{name}"),
        Engine::Mysql => format!("{schema}_{name}"),
    }
}

fn apply_creates_the_model_and_a_second_apply_is_a_no_op(engine: Engine) {
    let env = Env::new(engine);
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
        assert!(db.exists(rel), "{rel} exists");
        assert_eq!(db.count(rel), 0, "{rel} is empty");
    }
    assert_eq!(db.count("reporting.demandes_par_arrondissement"), 16);
    let hist = db.query(&format!(
        "SELECT version, length(checksum), CASE WHEN success THEN 'yes' ELSE 'no' END, applied_by FROM {} ORDER BY version",
        db.table(HISTORY)
    ));
    assert_eq!(hist.len(), applied.len());
    assert_eq!(hist[0][0].as_deref(), Some("1"));
    assert_eq!(hist[0][1].as_deref(), Some("64"));
    assert_eq!(hist[0][2].as_deref(), Some("yes"));
    assert!(
        hist[0][3].as_deref().unwrap().starts_with("mairie"),
        "{:?}",
        hist[0]
    );

    let again = env.run(&["schema", "apply"]);
    again.success().stdout_has("schema is up to date");
    assert_eq!(db.count(HISTORY), applied.len() as i64);
}

fn dry_run_lists_and_changes_nothing(engine: Engine) {
    let env = Env::new(engine);
    let out = env.run(&["schema", "apply", "--dry-run", "--format", "json"]);
    out.success();
    let doc = out.json();
    assert!(doc["targets"][0]["pending"].as_array().unwrap().len() >= 4);
    let db = env.db();
    assert!(!db.exists(HISTORY));
    assert!(!db.exists("metier.citoyens"));
}

fn status_reports_pending_then_applied(engine: Engine) {
    let env = Env::new(engine);
    let before = env.run(&["schema", "status", "--format", "json"]);
    before.success();
    let states: Vec<String> = before.json()["targets"][0]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !states.is_empty() && states.iter().all(|s| s == "pending"),
        "{states:?}"
    );
    env.run(&["schema", "apply"]).success();
    let after = env.run(&["schema", "status"]);
    after
        .success()
        .stdout_has("applied")
        .stdout_has("0 pending");
}

fn a_modified_migration_blocks_apply_and_names_the_file(engine: Engine) {
    let env = Env::new(engine);
    let sql = own_migrations(&env);
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .success();
    let f = env.path(&format!("sql/{}/V002__metier.sql", engine.name()));
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("\n-- an innocent-looking edit\n");
    std::fs::write(&f, text).unwrap();
    let later = model_table(engine, "metier", "later");
    migration(
        &env,
        "V099__later.sql",
        &format!("CREATE TABLE {later} (id int);\n"),
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
    assert!(!env.db().exists("metier.later"));
}

fn a_failing_migration_is_recorded_and_handled_as_the_engine_allows(engine: Engine) {
    let env = Env::new(engine);
    let sql = own_migrations(&env);
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .success();
    let half = model_table(engine, "metier", "half_done");
    let oops = model_table(engine, "metier", "oops");
    migration(
        &env,
        "V100__broken.sql",
        &format!("CREATE TABLE {half} (id int);\nCREATE TABL {oops} (id int);\n"),
    );
    let out = env.run(&["schema", "apply", "--migrations-dir", &sql]);
    out.code(1)
        .one_line_error()
        .stderr_has("V100__broken.sql:2:");
    let db = env.db();
    let success = || {
        db.scalar(&format!(
            "SELECT CASE WHEN success THEN 'yes' ELSE 'no' END FROM {} WHERE version = 100",
            db.table(HISTORY)
        ))
    };
    assert_eq!(success(), Some("no".into()), "the failure is recorded");
    env.run(&["schema", "status", "--migrations-dir", &sql])
        .success()
        .stdout_has("failed");

    // The fixed file.
    migration(
        &env,
        "V100__broken.sql",
        &format!("CREATE TABLE {half} (id int);\n"),
    );
    match engine {
        Engine::Postgres => {
            out.stderr_has("syntax error at or near \"TABL\"");
            // Transactional DDL: nothing of the failed migration is left, and it is retried.
            assert!(!db.exists("metier.half_done"));
            env.run(&["schema", "apply", "--migrations-dir", &sql])
                .success();
            assert_eq!(success(), Some("yes".into()));
            assert!(db.exists("metier.half_done"));
        }
        Engine::Mysql => {
            out.stderr_has("You have an error in your SQL syntax")
                .stderr_has("MySQL does not roll back DDL");
            // The first statement was committed: a person must look before anything runs.
            assert!(db.exists("metier.half_done"));
            env.run(&["schema", "apply", "--migrations-dir", &sql])
                .code(1)
                .stderr_has("V100__broken.sql failed on")
                .stderr_has("by hand");
            // Once repaired and the history row deleted, it runs again.
            db.query(&format!("DROP TABLE {half}"));
            db.query(&format!(
                "DELETE FROM {} WHERE version = 100",
                db.table(HISTORY)
            ));
            env.run(&["schema", "apply", "--migrations-dir", &sql])
                .success();
            assert_eq!(success(), Some("yes".into()));
        }
    }
}

fn a_pending_migration_below_an_applied_one_is_refused(engine: Engine) {
    let env = Env::new(engine);
    let sql = own_migrations(&env);
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .success();
    migration(&env, "V000__too_late.sql", "SELECT 1;\n");
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .code(1)
        .stderr_has("V000__too_late.sql is pending but version");
}

fn concurrent_applies_take_turns_and_apply_each_migration_once(engine: Engine) {
    let env = Env::new(engine);
    let sql = own_migrations(&env);
    // A slow first migration makes the two runs overlap.
    let sleep = match engine {
        Engine::Postgres => "SELECT pg_sleep(1);\n",
        Engine::Mysql => "SELECT SLEEP(1);\n",
    };
    migration(&env, "V000__slow.sql", sleep);
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
            .env("MAIRIE_MYSQL_PASSWORD", mysql_password())
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
    let files = std::fs::read_dir(env.path(&format!("sql/{}", engine.name())))
        .unwrap()
        .count() as i64;
    assert_eq!(env.db().count(HISTORY), files);
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

fn a_misnamed_migration_file_is_a_usage_error(engine: Engine) {
    let env = Env::new(engine);
    let sql = own_migrations(&env);
    migration(&env, "add_index.sql", "SELECT 1;\n");
    env.run(&["schema", "apply", "--migrations-dir", &sql])
        .code(2)
        .stderr_has("add_index.sql: a migration file must be named V<version>__<description>.sql");
}
