//! `schema` as Flyway and sqlx-cli users expect it: repeatable migrations, `no-transaction`
//! files, `repair`, `baseline`, `new`, `status --check`, a failing `apply` that reports what
//! it applied and where it failed, and `apply --dry-run -v`. Against real PostgreSQL and
//! MariaDB, each test in its own database, with small migrations of its own.

mod common;

use common::*;

per_engine!(
    repeatable_runs_after_versions_and_again_only_when_changed,
    repair_realigns_a_changed_checksum_and_removes_failed_rows,
    baseline_adopts_a_database_and_refuses_a_second_time,
    new_creates_the_next_file_without_connecting,
    status_check_exits_1_on_drift_and_0_when_up_to_date,
    a_failing_apply_lists_what_it_applied_and_names_the_file_and_line,
    dry_run_verbose_prints_the_sql_and_changes_nothing,
    a_history_table_of_the_first_shape_is_upgraded_in_place,
    a_no_transaction_file_with_two_statements_is_refused_before_anything_runs,
);

mod postgres_only {
    use super::*;

    #[test]
    fn no_transaction_builds_an_index_concurrently() {
        no_transaction_builds_an_index_concurrently_on(Engine::Postgres)
    }

    #[test]
    fn a_failed_concurrent_index_blocks_until_repaired() {
        a_failed_concurrent_index_blocks_until_repaired_on(Engine::Postgres)
    }

    #[test]
    fn a_runtime_error_without_position_names_its_statement_line() {
        let env = Env::new(Engine::Postgres);
        let dir = migrations(&env);
        write(&env, "V001__t.sql", "CREATE TABLE t1 (id int);\n");
        write(
            &env,
            "V002__again.sql",
            "-- the same table twice\nCREATE TABLE t2 (id int);\n\nCREATE TABLE\n  t1 (id int);\n",
        );
        env.run(&["schema", "apply", "--migrations-dir", &dir])
            .code(1)
            .one_line_error()
            .stderr_has("V002__again.sql:4: relation \"t1\" already exists");
        // Rolled back whole: the first statement of V002 left nothing.
        assert!(!env.db().exists("t2"));
    }
}

const HISTORY: &str = "mairie_dba_schema_history";

/// An empty migrations directory of the test's own (`<dir>/sql/<engine>/`); returns `sql`.
fn migrations(env: &Env) -> String {
    let dir = env.path("sql");
    std::fs::create_dir_all(dir.join(env.engine.name())).unwrap();
    dir.display().to_string()
}

fn write(env: &Env, name: &str, sql: &str) {
    env.write(&format!("sql/{}/{name}", env.engine.name()), sql);
}

fn history_table(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "public.mairie_dba_schema_history",
        Engine::Mysql => "mairie_dba_schema_history",
    }
}

/// `schema status --format json`: (file, state) of each migration.
fn states(env: &Env, dir: &str) -> Vec<(String, String)> {
    let out = schema_json(env, dir, &["status"]);
    out.success();
    out.json()["targets"][0]["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["file"].as_str().unwrap_or("").to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `schema ARGS… --migrations-dir DIR --format json`.
fn schema_json(env: &Env, dir: &str, args: &[&str]) -> Run {
    let mut all = vec!["schema"];
    all.extend_from_slice(args);
    all.extend(["--migrations-dir", dir, "--format", "json"]);
    env.run(&all)
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The history rows of a script: (kind, success as yes/no).
fn rows_of(db: &Db, script: &str) -> Vec<(String, String)> {
    db.query(&format!(
        "SELECT kind, CASE WHEN success THEN 'yes' ELSE 'no' END FROM {} WHERE script = '{script}' ORDER BY installed_rank",
        db.table(HISTORY)
    ))
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
    .collect()
}

fn repeatable_runs_after_versions_and_again_only_when_changed(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    write(
        &env,
        "V001__t.sql",
        "CREATE TABLE t1 (id int, nom varchar(20));\n",
    );
    write(
        &env,
        "R__views.sql",
        "CREATE OR REPLACE VIEW v1 AS SELECT id FROM t1;\n",
    );
    let out = schema_json(&env, &dir, &["apply"]);
    out.success();
    let applied: Vec<String> = out.json()["targets"][0]["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["file"].as_str().unwrap().to_string())
        .collect();
    // The repeatable after the versioned one it needs, whatever the names' order.
    assert_eq!(applied, ["V001__t.sql", "R__views.sql"]);
    assert_eq!(
        out.json()["targets"][0]["applied"][1]["version"],
        serde_json::Value::Null
    );
    assert_eq!(out.json()["targets"][0]["applied"][1]["kind"], "repeatable");
    let db = env.db();
    assert!(db.exists("v1"));
    assert_eq!(
        states(&env, &dir),
        pairs(&[("V001__t.sql", "applied"), ("R__views.sql", "applied")])
    );

    // Unchanged: not run again.
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success()
        .stdout_has("schema is up to date");
    assert_eq!(
        rows_of(db, "R__views.sql"),
        [("repeatable".into(), "yes".into())]
    );

    // Changed: outdated, a check fails on it, and apply runs it again.
    write(
        &env,
        "R__views.sql",
        "CREATE OR REPLACE VIEW v1 AS SELECT id, nom FROM t1;\n",
    );
    assert_eq!(
        states(&env, &dir)[1],
        ("R__views.sql".to_string(), "outdated".to_string())
    );
    env.run(&["schema", "status", "--migrations-dir", &dir])
        .success()
        .stdout_has("outdated (will re-apply)")
        .stdout_has("1 outdated");
    env.run(&["schema", "status", "--check", "--migrations-dir", &dir])
        .code(1);
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success()
        .stdout_has("1 migration(s) applied");
    assert_eq!(
        rows_of(db, "R__views.sql"),
        [
            ("repeatable".into(), "yes".into()),
            ("repeatable".into(), "yes".into())
        ]
    );
    // The view has the new column.
    assert_eq!(
        db.query("SELECT nom FROM v1").len(),
        0,
        "the re-applied view selects nom"
    );
    env.run(&["schema", "status", "--check", "--migrations-dir", &dir])
        .success();
}

fn repair_realigns_a_changed_checksum_and_removes_failed_rows(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    write(&env, "V001__t.sql", "CREATE TABLE t1 (id int);\n");
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success();
    // A deliberate edit (a comment): apply refuses it and points at repair.
    write(
        &env,
        "V001__t.sql",
        "-- the first table\nCREATE TABLE t1 (id int);\n",
    );
    write(&env, "V002__u.sql", "CREATE TABLE t2 (id int);\n");
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .code(1)
        .one_line_error()
        .stderr_has("V001__t.sql was modified")
        .stderr_has("schema repair");

    // A dry run says what it would do and does nothing.
    let dry = schema_json(&env, &dir, &["repair", "--dry-run"]);
    dry.success();
    let doc = dry.json();
    assert_eq!(doc["targets"][0]["dry_run"], true);
    assert_eq!(doc["targets"][0]["history_table"], history_table(engine));
    assert_eq!(
        doc["targets"][0]["changes"][0]["action"],
        "realigned_checksum"
    );
    assert_eq!(doc["targets"][0]["changes"][0]["file"], "V001__t.sql");
    assert_eq!(states(&env, &dir)[0].1, "modified");

    let out = env.run(&["schema", "repair", "--migrations-dir", &dir]);
    out.success()
        .stdout_has("realigned 1 checksum(s)")
        .stdout_has(history_table(engine))
        .stdout_has("realigned checksum");
    assert_eq!(states(&env, &dir)[0].1, "applied");
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success()
        .stdout_has("1 migration(s) applied");

    // A failed migration, fixed by hand, then repaired: its failed row goes, and the fixed
    // file runs.
    write(
        &env,
        "V003__broken.sql",
        "CREATE TABLE t3 (id int);\nCREATE TABL t4 (id int);\n",
    );
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .code(1);
    let db = env.db();
    assert_eq!(
        rows_of(db, "V003__broken.sql"),
        [("versioned".into(), "no".into())]
    );
    if engine == Engine::Mysql {
        // Committed as it went: undone by hand, as the message says.
        db.query("DROP TABLE t3");
    }
    write(
        &env,
        "V003__broken.sql",
        "CREATE TABLE t3 (id int);\nCREATE TABLE t4 (id int);\n",
    );
    let out = schema_json(&env, &dir, &["repair"]);
    out.success();
    let changes = out.json()["targets"][0]["changes"].clone();
    assert_eq!(changes.as_array().unwrap().len(), 1, "{changes}");
    assert_eq!(changes[0]["action"], "removed_failed_row");
    assert_eq!(changes[0]["version"], 3);
    assert!(rows_of(db, "V003__broken.sql").is_empty());
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success();
    assert!(db.exists("t4"));
    env.run(&["schema", "repair", "--migrations-dir", &dir])
        .success()
        .stdout_has(&format!("{} needs no repair", history_table(engine)));
}

fn baseline_adopts_a_database_and_refuses_a_second_time(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    // A database made before mairie-dba: the tables of V001 and V002 are there already.
    let db = env.db();
    db.query("CREATE TABLE t1 (id int)");
    db.query("CREATE TABLE t2 (id int)");
    write(&env, "V001__t1.sql", "CREATE TABLE t1 (id int);\n");
    write(&env, "V002__t2.sql", "CREATE TABLE t2 (id int);\n");
    write(&env, "V003__t3.sql", "CREATE TABLE t3 (id int);\n");

    let out = schema_json(&env, &dir, &["baseline", "--version", "2"]);
    out.success();
    let t = &out.json()["targets"][0];
    assert_eq!(t["version"], 2);
    assert_eq!(
        t["covered"],
        serde_json::json!(["V001__t1.sql", "V002__t2.sql"])
    );
    assert_eq!(
        states(&env, &dir),
        pairs(&[
            ("V001__t1.sql", "baseline"),
            ("V002__t2.sql", "baseline"),
            ("V003__t3.sql", "pending")
        ])
    );
    // Only V003 runs (V001 would fail: its table exists).
    let out = schema_json(&env, &dir, &["apply"]);
    out.success();
    assert_eq!(
        out.json()["targets"][0]["applied"][0]["file"],
        "V003__t3.sql"
    );
    assert_eq!(
        out.json()["targets"][0]["applied"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(db.exists("t3"));
    assert_eq!(
        db.scalar(&format!(
            "SELECT kind FROM {} WHERE version = 2",
            db.table(HISTORY)
        ))
        .as_deref(),
        Some("baseline")
    );

    // A history with rows: refused, naming the table.
    env.run(&[
        "schema",
        "baseline",
        "--version",
        "5",
        "--migrations-dir",
        &dir,
    ])
    .code(1)
    .one_line_error()
    .stderr_has(&format!("{} already has 2 row(s)", history_table(engine)));
    env.run(&["schema", "baseline", "--migrations-dir", &dir])
        .code(2);
}

fn new_creates_the_next_file_without_connecting(engine: Engine) {
    let mut env = Env::new(engine);
    let dir = migrations(&env);
    write(&env, "V001__t1.sql", "CREATE TABLE t1 (id int);\n");
    write(&env, "V004__t4.sql", "CREATE TABLE t4 (id int);\n");
    // No password: `new` never connects.
    env.remove_env(engine.password_var());
    let engine_dir = env.path(&format!("sql/{}", engine.name()));

    let out = env.run(&[
        "schema",
        "new",
        "Index des demandes: statut",
        "--migrations-dir",
        &dir,
    ]);
    let created = engine_dir.join("V005__index_des_demandes_statut.sql");
    out.success()
        .stdout_has(&format!("created {}", created.display()));
    let text = std::fs::read_to_string(&created).unwrap();
    assert!(
        text.starts_with("-- V005__index_des_demandes_statut.sql: Index des demandes: statut\n")
    );

    let out = schema_json(&env, &dir, &["new", "concurrent index", "--no-transaction"]);
    out.success();
    assert_eq!(out.json()["created"][0]["version"], 6);
    let text = std::fs::read_to_string(engine_dir.join("V006__concurrent_index.sql")).unwrap();
    assert!(
        text.starts_with("-- mairie-dba: no-transaction\n"),
        "{text}"
    );

    env.run(&[
        "schema",
        "new",
        "reporting views",
        "--repeatable",
        "--migrations-dir",
        &dir,
    ])
    .success()
    .stdout_has("R__reporting_views.sql");
    // Never overwritten.
    std::fs::write(engine_dir.join("R__reporting_views.sql"), "-- mine\n").unwrap();
    env.run(&[
        "schema",
        "new",
        "Reporting views",
        "--repeatable",
        "--migrations-dir",
        &dir,
    ])
    .code(1)
    .one_line_error()
    .stderr_has("R__reporting_views.sql already exists");
    assert_eq!(
        std::fs::read_to_string(engine_dir.join("R__reporting_views.sql")).unwrap(),
        "-- mine\n"
    );
    env.run(&["schema", "new", "%%%", "--migrations-dir", &dir])
        .code(2)
        .stderr_has("needs a letter or a digit");
    // Five files, all of which `status` reads as pending once the password is back.
    assert_eq!(std::fs::read_dir(&engine_dir).unwrap().count(), 5);
    let pw = match engine {
        Engine::Postgres => password(),
        Engine::Mysql => mysql_password(),
    };
    env.set_env(engine.password_var(), &pw);
    let st = states(&env, &dir);
    assert_eq!(st.len(), 5, "{st:?}");
    assert!(st.iter().all(|(_, s)| s == "pending"), "{st:?}");
    // And the empty no-transaction file applies as a no-op.
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success()
        .stdout_has("5 migration(s) applied");
}

fn status_check_exits_1_on_drift_and_0_when_up_to_date(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    write(&env, "V001__t.sql", "CREATE TABLE t1 (id int);\n");
    let out = env.run(&[
        "schema",
        "status",
        "--check",
        "--migrations-dir",
        &dir,
        "--format",
        "nagios",
    ]);
    out.code(1);
    assert!(
        out.stdout.starts_with(&format!(
            "MAIRIE-DBA WARNING - {}: 1 pending (V001__t.sql)",
            engine.name()
        )),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 1);
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success();
    let out = schema_json(&env, &dir, &["status", "--check"]);
    out.success();
    assert_eq!(out.json()["status"], "ok");
    assert_eq!(out.json()["targets"][0]["status"], "ok");

    // Modified: 1.
    write(&env, "V001__t.sql", "CREATE TABLE t1 (id bigint);\n");
    env.run(&["schema", "status", "--check", "--migrations-dir", &dir])
        .code(1)
        .stdout_has("modified");
    // Without --check, status is an operation that succeeded.
    env.run(&["schema", "status", "--migrations-dir", &dir])
        .success();
    // Failed: 1.
    write(&env, "V001__t.sql", "CREATE TABLE t1 (id int);\n");
    write(&env, "V002__bad.sql", "CREATE TABL t2 (id int);\n");
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .code(1);
    let out = env.run(&[
        "schema",
        "status",
        "--check",
        "--migrations-dir",
        &dir,
        "--format",
        "nagios",
    ]);
    out.code(1).stdout_has("1 failed (V002__bad.sql)");
    // A usage error of a check is UNKNOWN; --format nagios needs --check.
    env.run(&[
        "schema",
        "status",
        "--check",
        "--format",
        "junit",
        "--migrations-dir",
        &dir,
    ])
    .code(3);
    env.run(&[
        "schema",
        "status",
        "--format",
        "nagios",
        "--migrations-dir",
        &dir,
    ])
    .code(2);
    env.run(&["schema", "status", "--check", "--bogus"]).code(3);
    // An unreachable target is CRITICAL.
    let mut down = Env::empty();
    down.engine = engine;
    down.write_engine_config("nowhere", "");
    let port = free_port();
    let cfg = std::fs::read_to_string(down.path(&format!("config_{}.yml", engine.name())))
        .unwrap()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("port:") {
                format!("  port: {port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    down.write(&format!("config_{}.yml", engine.name()), cfg + "\n");
    down.write_global("");
    down.run(&[
        "schema",
        "status",
        "--check",
        "--migrations-dir",
        &dir,
        "--format",
        "nagios",
    ])
    .code(2)
    .stdout_has("MAIRIE-DBA CRITICAL");
}

fn a_failing_apply_lists_what_it_applied_and_names_the_file_and_line(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    write(&env, "V001__a.sql", "CREATE TABLE t1 (id int);\n");
    write(&env, "V002__b.sql", "CREATE TABLE t2 (id int);\n");
    // The error is on the 4th line of the file, the 3rd of its statement.
    write(
        &env,
        "V003__c.sql",
        "-- a view over a column that is not there\nCREATE VIEW v3 AS\n  SELECT id\n  FROM t1 WHERE nope = 1;\n",
    );
    write(&env, "V004__d.sql", "CREATE TABLE t4 (id int);\n");
    let out = schema_json(&env, &dir, &["apply"]);
    // PostgreSQL points at the column (line 4); MySQL names no position for this error, so
    // the line is that of the statement's first line.
    let at = match engine {
        Engine::Postgres => "V003__c.sql:4: ",
        Engine::Mysql => "V003__c.sql:2: ",
    };
    out.code(1).one_line_error().stderr_has(at);
    let doc = out.json();
    assert_eq!(doc["status"], "failed");
    let t = &doc["targets"][0];
    assert_eq!(t["status"], "failed");
    let applied: Vec<&str> = t["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["file"].as_str().unwrap())
        .collect();
    assert_eq!(applied, ["V001__a.sql", "V002__b.sql"]);
    assert_eq!(t["failed"]["file"], "V003__c.sql");
    assert_eq!(t["failed"]["version"], 3);
    let error = t["error"].as_str().unwrap();
    assert!(error.contains(at), "{error}");
    assert!(error.contains("nope"), "{error}");
    assert!(!env.db().exists("t4"), "nothing after the failure ran");

    // The table says the same for people.
    let db = env.db();
    if engine == Engine::Mysql {
        db.query(&format!(
            "DELETE FROM {} WHERE version = 3",
            db.table(HISTORY)
        ));
    }
    write(
        &env,
        "V003__c.sql",
        "CREATE TABLE t3 (id int);\nSELECT nope FROM t1;\n",
    );
    let out = env.run(&["schema", "apply", "--migrations-dir", &dir]);
    out.code(1)
        .stdout_has("0 migration(s) applied, then V003__c.sql FAILED")
        .stdout_has("FAILED")
        .stderr_has("V003__c.sql:2: ");
}

fn dry_run_verbose_prints_the_sql_and_changes_nothing(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    write(
        &env,
        "V001__a.sql",
        "-- two tables\nCREATE TABLE t1 (id int);\n\nCREATE TABLE t2 (id int);\n",
    );
    write(
        &env,
        "R__v.sql",
        "CREATE OR REPLACE VIEW v1 AS SELECT id FROM t1;\n",
    );
    let out = env.run(&[
        "schema",
        "apply",
        "--dry-run",
        "-v",
        "--migrations-dir",
        &dir,
    ]);
    out.success()
        .stdout_has("-- V001__a.sql:2\nCREATE TABLE t1 (id int);")
        .stdout_has("-- V001__a.sql:4\nCREATE TABLE t2 (id int);")
        .stdout_has("-- R__v.sql:1\nCREATE OR REPLACE VIEW v1 AS SELECT id FROM t1;")
        .stdout_has(match engine {
            Engine::Postgres => "-- postgres: V001__a.sql (in one transaction)",
            Engine::Mysql => "-- mysql: V001__a.sql (statement by statement",
        })
        .stdout_has("2 migration(s) would be applied (dry run)");
    // Without -v, no SQL.
    env.run(&["schema", "apply", "--dry-run", "--migrations-dir", &dir])
        .success()
        .lacks("CREATE TABLE");
    let out = schema_json(&env, &dir, &["apply", "--dry-run", "-v"]);
    out.success();
    let st = &out.json()["targets"][0]["pending"][0]["statements"];
    assert_eq!(st[1]["line"], 4);
    assert_eq!(st[1]["sql"], "CREATE TABLE t2 (id int)");
    let db = env.db();
    assert!(!db.exists("t1") && !db.exists(HISTORY));
}

fn a_history_table_of_the_first_shape_is_upgraded_in_place(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    write(&env, "V001__a.sql", "CREATE TABLE t1 (id int);\n");
    write(&env, "V002__b.sql", "CREATE TABLE t2 (id int);\n");
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success();
    // Rebuild the history as the earlier releases made it: version as the key, no kind.
    let db = env.db();
    let h = db.table(HISTORY);
    let old_ddl = match engine {
        Engine::Postgres => format!(
            "CREATE TABLE {h} (version bigint PRIMARY KEY, description text NOT NULL, script text NOT NULL,
               checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), execution_ms bigint NOT NULL,
               applied_by text NOT NULL DEFAULT current_user, success boolean NOT NULL)"
        ),
        Engine::Mysql => format!(
            "CREATE TABLE {h} (version BIGINT NOT NULL PRIMARY KEY, description VARCHAR(255) NOT NULL,
               script VARCHAR(255) NOT NULL, checksum CHAR(64) NOT NULL, applied_at DATETIME(6) NOT NULL,
               execution_ms BIGINT NOT NULL, applied_by VARCHAR(255) NOT NULL, success BOOLEAN NOT NULL) ENGINE=InnoDB"
        ),
    };
    db.query(&format!("CREATE TABLE old_history AS SELECT version, description, script, checksum, applied_at, execution_ms, applied_by, success FROM {h}"));
    db.query(&format!("DROP TABLE {h}"));
    db.query(&old_ddl);
    db.query(&format!("INSERT INTO {h} SELECT * FROM old_history"));
    db.query("DROP TABLE old_history");

    // Read as it is: both applied, nothing written.
    assert_eq!(
        states(&env, &dir),
        pairs(&[("V001__a.sql", "applied"), ("V002__b.sql", "applied")])
    );
    // The next apply upgrades it, keeps its rows, and records a repeatable.
    write(&env, "V003__c.sql", "CREATE TABLE t3 (id int);\n");
    write(
        &env,
        "R__v.sql",
        "CREATE OR REPLACE VIEW v1 AS SELECT id FROM t1;\n",
    );
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success()
        .stdout_has("2 migration(s) applied");
    let rows: Vec<Vec<Option<String>>> = db.query(&format!(
        "SELECT installed_rank, version, kind, script FROM {h} ORDER BY installed_rank"
    ));
    let got: Vec<(Option<&str>, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r[1].as_deref(),
                r[2].as_deref().unwrap(),
                r[3].as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("1"), "versioned", "V001__a.sql"),
            (Some("2"), "versioned", "V002__b.sql"),
            (Some("3"), "versioned", "V003__c.sql"),
            (None, "repeatable", "R__v.sql"),
        ]
    );
    assert_eq!(rows[0][0].as_deref(), Some("1"));
    assert_eq!(
        states(&env, &dir),
        pairs(&[
            ("V001__a.sql", "applied"),
            ("V002__b.sql", "applied"),
            ("V003__c.sql", "applied"),
            ("R__v.sql", "applied")
        ])
    );
}

fn a_no_transaction_file_with_two_statements_is_refused_before_anything_runs(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    write(&env, "V001__a.sql", "CREATE TABLE t1 (id int);\n");
    write(
        &env,
        "V002__two.sql",
        "-- mairie-dba: no-transaction\nCREATE INDEX i1 ON t1 (id);\nCREATE INDEX i2 ON t1 (id);\n",
    );
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .code(2)
        .one_line_error()
        .stderr_has("V002__two.sql: a `-- mairie-dba: no-transaction` migration must hold exactly one statement, it holds 2 (lines 2, 3)");
    let db = env.db();
    assert!(!db.exists("t1") && !db.exists(HISTORY), "nothing ran");
    // A misspelt marker is refused too, naming its line.
    write(
        &env,
        "V002__two.sql",
        "-- mairie-dba: no-transactions\nCREATE INDEX i1 ON t1 (id);\n",
    );
    env.run(&["schema", "status", "--migrations-dir", &dir])
        .code(2)
        .stderr_has("V002__two.sql:1: unknown directive");
    // One statement: fine, and it runs on its own.
    write(
        &env,
        "V002__two.sql",
        "-- mairie-dba: no-transaction\nCREATE INDEX i1 ON t1 (id);\n",
    );
    let out = schema_json(&env, &dir, &["apply"]);
    out.success();
    assert_eq!(
        out.json()["targets"][0]["applied"][1]["no_transaction"],
        true
    );
    assert_eq!(
        rows_of(db, "V002__two.sql"),
        [("versioned".into(), "yes".into())]
    );
}

fn no_transaction_builds_an_index_concurrently_on(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    write(&env, "V001__t.sql", "CREATE TABLE t1 (id int, nom text);\n");
    write(
        &env,
        "V002__index.sql",
        "-- mairie-dba: no-transaction\n-- as maintenance index-report recommends\nCREATE INDEX CONCURRENTLY t1_nom ON t1 (nom);\n",
    );
    // Without the marker PostgreSQL refuses it: the marker is what makes this work.
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success()
        .stdout_has("2 migration(s) applied");
    let db = env.db();
    assert_eq!(
        db.scalar("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't1_nom'::regclass")
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        rows_of(db, "V002__index.sql"),
        [("versioned".into(), "yes".into())]
    );
    write(
        &env,
        "V003__in_tx.sql",
        "CREATE INDEX CONCURRENTLY t1_id ON t1 (id);\n",
    );
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .code(1)
        .stderr_has(
            "V003__in_tx.sql:1: CREATE INDEX CONCURRENTLY cannot run inside a transaction block",
        );
}

fn a_failed_concurrent_index_blocks_until_repaired_on(engine: Engine) {
    let env = Env::new(engine);
    let dir = migrations(&env);
    write(
        &env,
        "V001__t.sql",
        "CREATE TABLE t1 (id int);\nINSERT INTO t1 VALUES (1), (1);\n",
    );
    write(
        &env,
        "V002__unique.sql",
        "-- mairie-dba: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t1_id ON t1 (id);\n",
    );
    let out = schema_json(&env, &dir, &["apply"]);
    out.code(1)
        .one_line_error()
        .stderr_has("V002__unique.sql:2: could not create unique index \"t1_id\"")
        .stderr_has("INVALID index")
        .stderr_has("`mairie-dba schema repair`")
        .stderr_has("public.mairie_dba_schema_history");
    assert_eq!(
        out.json()["targets"][0]["applied"][0]["file"],
        "V001__t.sql"
    );
    let db = env.db();
    // What the message says to look for is there, and the history says it failed.
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM pg_index WHERE NOT indisvalid AND indexrelid = 't1_id'::regclass"
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        rows_of(db, "V002__unique.sql"),
        [("versioned".into(), "no".into())]
    );
    assert_eq!(states(&env, &dir)[1].1, "failed");

    // Not retried blindly.
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .code(1)
        .one_line_error()
        .stderr_has("V002__unique.sql failed on")
        .stderr_has("outside a transaction")
        .stderr_has("schema repair");

    // Fixed by hand, repaired, applied.
    db.query("DROP INDEX CONCURRENTLY t1_id");
    db.query("DELETE FROM t1 WHERE ctid <> (SELECT min(ctid) FROM t1)");
    env.run(&["schema", "repair", "--migrations-dir", &dir])
        .success()
        .stdout_has("removed 1 failed row(s)");
    env.run(&["schema", "apply", "--migrations-dir", &dir])
        .success()
        .stdout_has("1 migration(s) applied");
    assert_eq!(
        db.scalar("SELECT indisvalid::text FROM pg_index WHERE indexrelid = 't1_id'::regclass")
            .as_deref(),
        Some("true")
    );
}
