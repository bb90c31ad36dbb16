//! `maintenance` against real PostgreSQL and MariaDB servers, each test written once and run
//! on both where it applies: the index report finds what was planted (and its fix SQL runs),
//! analyze and vacuum really happen (and `--dry-run` changes nothing), slow-queries lists a
//! statement that ran, and cleanup deletes exactly the aged journal rows in batches.

mod common;

use common::*;
use serde_json::Value;

per_engine!(
    index_report_finds_unused_duplicate_and_overlapping_indexes_with_fixes_that_run,
    analyze_and_vacuum_run_per_table_and_dry_run_changes_nothing,
    a_named_table_that_does_not_exist_fails_naming_it,
    slow_queries_list_a_statement_that_ran,
    cleanup_deletes_exactly_the_old_journal_rows_in_batches,
    cleanup_configuration_errors,
);

/// The findings of the only target, after checking the document's shape.
fn findings(out: &Run) -> Vec<Value> {
    let doc = out.json();
    assert_eq!(doc["status"], "success", "{}", out.stdout);
    let t = &doc["targets"][0];
    assert_eq!(t["status"], "success", "{}", out.stdout);
    let f = t["findings"].as_array().expect("findings").clone();
    for x in &f {
        for key in ["kind", "table", "index", "size_bytes", "detail", "fix"] {
            assert!(x.get(key).is_some(), "{key} in {x}");
        }
    }
    f
}

fn find<'a>(f: &'a [Value], kind: &str, index: &str) -> Option<&'a Value> {
    f.iter()
        .find(|x| x["kind"] == kind && x["index"].as_str() == Some(index))
}

fn index_report_finds_unused_duplicate_and_overlapping_indexes_with_fixes_that_run(engine: Engine) {
    let env = Env::with_schema(engine);
    let db = env.db();
    db.query("CREATE INDEX citoyens_telephone_unused_idx ON metier.citoyens (telephone)");
    db.query("CREATE INDEX citoyens_arrondissement_dup_idx ON metier.citoyens (arrondissement)");
    db.query("CREATE INDEX demandes_statut_date_idx ON metier.demandes (statut, date_depot)");
    let citoyens = db.table("metier.citoyens");
    let demandes = db.table("metier.demandes");
    if engine == Engine::Postgres {
        // A child table whose foreign key has no index.
        db.query(
            "CREATE TABLE metier.pieces_jointes (id bigint PRIMARY KEY,
                 demande_id bigint NOT NULL REFERENCES metier.demandes (id), nom text)",
        );
    }

    let out = env.run(&["--format", "json", "maintenance", "index-report"]);
    out.success();
    let f = findings(&out);

    let dup = find(&f, "duplicate", "citoyens_arrondissement_dup_idx")
        .unwrap_or_else(|| panic!("duplicate not reported: {}", out.stdout));
    assert_eq!(dup["table"], citoyens.as_str());
    assert!(
        dup["detail"]
            .as_str()
            .unwrap()
            .contains("citoyens_arrondissement_idx"),
        "{dup}"
    );
    assert!(
        find(&f, "duplicate", "citoyens_arrondissement_idx").is_none(),
        "the older of two duplicates is kept: {}",
        out.stdout
    );
    let over = find(&f, "overlapping", "demandes_statut_idx")
        .unwrap_or_else(|| panic!("overlap not reported: {}", out.stdout));
    assert_eq!(over["table"], demandes.as_str());
    assert!(
        over["detail"]
            .as_str()
            .unwrap()
            .contains("demandes_statut_date_idx"),
        "{over}"
    );
    let unused = find(&f, "unused", "citoyens_telephone_unused_idx")
        .unwrap_or_else(|| panic!("unused index not reported: {}", out.stdout));
    let fixes: Vec<String> = [dup, over, unused]
        .iter()
        .map(|x| x["fix"].as_str().expect("a fix").to_string())
        .collect();
    match engine {
        Engine::Postgres => {
            assert_eq!(
                fixes[0],
                "DROP INDEX CONCURRENTLY \"metier\".\"citoyens_arrondissement_dup_idx\";"
            );
            assert_eq!(
                fixes[2],
                "DROP INDEX CONCURRENTLY \"metier\".\"citoyens_telephone_unused_idx\";"
            );
            assert!(unused["size_bytes"].as_i64().unwrap() > 0, "{unused}");
            assert!(
                unused["detail"].as_str().unwrap().contains("since"),
                "{unused}"
            );
        }
        Engine::Mysql => {
            assert_eq!(
                fixes[0],
                "ALTER TABLE `metier_citoyens` DROP INDEX `citoyens_arrondissement_dup_idx`;"
            );
            assert_eq!(
                fixes[2],
                "ALTER TABLE `metier_citoyens` DROP INDEX `citoyens_telephone_unused_idx`;"
            );
        }
    }
    // Unique and primary indexes are never called unused.
    assert!(
        !f.iter().any(|x| x["kind"] == "unused"
            && x["index"]
                .as_str()
                .is_some_and(|i| i.ends_with("_pkey") || i == "PRIMARY")),
        "{}",
        out.stdout
    );

    if engine == Engine::Postgres {
        let fk: Vec<&Value> = f
            .iter()
            .filter(|x| x["kind"] == "fk-without-index")
            .collect();
        assert_eq!(
            fk.len(),
            1,
            "only the planted foreign key lacks an index (the model's have theirs): {}",
            out.stdout
        );
        assert_eq!(fk[0]["table"], "metier.pieces_jointes");
        assert!(
            fk[0]["detail"]
                .as_str()
                .unwrap()
                .contains("metier.demandes"),
            "{}",
            fk[0]
        );
        assert_eq!(
            fk[0]["fix"],
            "CREATE INDEX CONCURRENTLY ON \"metier\".\"pieces_jointes\" (\"demande_id\");"
        );
        db.query(fk[0]["fix"].as_str().unwrap());
    }

    // The fixes run as given, and the findings go away.
    for fix in &fixes {
        db.query(fix);
    }
    let out = env.run(&["--format", "json", "maintenance", "index-report"]);
    out.success();
    let f = findings(&out);
    for (kind, index) in [
        ("duplicate", "citoyens_arrondissement_dup_idx"),
        ("overlapping", "demandes_statut_idx"),
        ("unused", "citoyens_telephone_unused_idx"),
    ] {
        assert!(
            find(&f, kind, index).is_none(),
            "{kind} {index}: {}",
            out.stdout
        );
    }
    assert!(
        !f.iter().any(|x| x["kind"] == "fk-without-index"),
        "{}",
        out.stdout
    );

    // For people: a table per target, with the fixes.
    env.run(&["maintenance", "index-report"])
        .success()
        .stdout_has("finding(s)")
        .stdout_has("unused");
}

/// When a table was last analyzed and vacuumed, as text ("" for never).
fn pg_maintained(db: &Db, table: &str) -> (String, String) {
    let (schema, name) = table.split_once('.').unwrap();
    let r = db.query(&format!(
        "SELECT coalesce(last_analyze::text, ''), coalesce(last_vacuum::text, '')
         FROM pg_stat_user_tables WHERE schemaname = '{schema}' AND relname = '{name}'"
    ));
    (
        r[0][0].clone().unwrap_or_default(),
        r[0][1].clone().unwrap_or_default(),
    )
}

/// InnoDB's persistent statistics time for a table (ANALYZE TABLE renews it).
fn my_stats_time(db: &Db, table: &str) -> String {
    db.scalar(&format!(
        "SELECT CAST(last_update AS CHAR) FROM mysql.innodb_table_stats
         WHERE database_name = DATABASE() AND table_name = '{}'",
        db.table(table)
    ))
    .unwrap_or_default()
}

fn table_entries(out: &Run) -> Vec<Value> {
    let doc = out.json();
    let t = &doc["targets"][0];
    for key in ["target", "status", "tables"] {
        assert!(t.get(key).is_some(), "{key} in {t}");
    }
    let v = t["tables"].as_array().unwrap().clone();
    for x in &v {
        for key in ["table", "action", "seconds", "status", "detail"] {
            assert!(x.get(key).is_some(), "{key} in {x}");
        }
    }
    v
}

fn analyze_and_vacuum_run_per_table_and_dry_run_changes_nothing(engine: Engine) {
    let env = Env::with_schema(engine);
    let db = env.db();
    let citoyens = db.table("metier.citoyens");
    let before_stats = match engine {
        Engine::Postgres => {
            assert_eq!(
                pg_maintained(db, "metier.citoyens"),
                (String::new(), String::new())
            );
            String::new()
        }
        Engine::Mysql => my_stats_time(db, "metier.citoyens"),
    };

    // --dry-run lists the statements and runs none.
    let out = env.run(&["--format", "json", "maintenance", "analyze", "--dry-run"]);
    out.success();
    assert_eq!(out.json()["dry_run"], true);
    let planned = table_entries(&out);
    let entry = planned
        .iter()
        .find(|x| x["table"] == citoyens.as_str())
        .unwrap_or_else(|| panic!("{citoyens} planned: {}", out.stdout));
    assert_eq!(entry["status"], "planned");
    let expected = match engine {
        Engine::Postgres => "ANALYZE \"metier\".\"citoyens\"".to_string(),
        Engine::Mysql => format!("ANALYZE TABLE `{}`.`metier_citoyens`", db.name()),
    };
    assert_eq!(entry["statements"][0], expected.as_str(), "{entry}");
    let out = env.run(&["maintenance", "vacuum", "--full", "--dry-run"]);
    out.success().stdout_has(match engine {
        Engine::Postgres => "VACUUM (FULL, ANALYZE) \"metier\".\"citoyens\"",
        Engine::Mysql => "OPTIMIZE TABLE",
    });
    std::thread::sleep(std::time::Duration::from_millis(1100));
    match engine {
        Engine::Postgres => assert_eq!(
            pg_maintained(db, "metier.citoyens"),
            (String::new(), String::new()),
            "--dry-run changed nothing"
        ),
        Engine::Mysql => assert_eq!(my_stats_time(db, "metier.citoyens"), before_stats),
    }

    // analyze: every table, each with its status and time.
    let out = env.run(&["--format", "json", "maintenance", "analyze"]);
    out.success();
    assert_eq!(out.json()["status"], "success");
    let done = table_entries(&out);
    assert!(done.len() >= 7, "every table of the model: {}", out.stdout);
    for x in &done {
        assert_eq!(x["status"], "success", "{x}");
        assert_eq!(x["action"], "analyze", "{x}");
        assert!(x["seconds"].as_f64().is_some(), "{x}");
    }
    match engine {
        Engine::Postgres => {
            let (analyzed, vacuumed) = pg_maintained(db, "metier.citoyens");
            assert!(!analyzed.is_empty() && vacuumed.is_empty());
        }
        Engine::Mysql => assert_ne!(my_stats_time(db, "metier.citoyens"), before_stats),
    }

    // vacuum of one named table: only that one.
    let out = env.run(&[
        "--format",
        "json",
        "maintenance",
        "vacuum",
        "--table",
        "metier.citoyens",
    ]);
    out.success();
    let done = table_entries(&out);
    assert_eq!(done.len(), 1, "{}", out.stdout);
    assert_eq!(done[0]["table"], citoyens.as_str());
    assert_eq!(done[0]["status"], "success");
    match engine {
        Engine::Postgres => {
            assert_eq!(done[0]["action"], "vacuum");
            assert!(!pg_maintained(db, "metier.citoyens").1.is_empty());
            assert!(pg_maintained(db, "metier.demandes").1.is_empty());
        }
        Engine::Mysql => {
            assert_eq!(done[0]["action"], "optimize");
            // InnoDB's normal answer is a note, not a failure.
            assert!(
                done[0]["detail"].as_str().unwrap().contains("recreate"),
                "{}",
                done[0]
            );
        }
    }

    // For people: the summary table.
    env.run(&["maintenance", "analyze", "--table", "metier.demandes"])
        .success()
        .stdout_has("seconds")
        .stdout_has(&db.table("metier.demandes"));
}

fn a_named_table_that_does_not_exist_fails_naming_it(engine: Engine) {
    let env = Env::with_schema(engine);
    let db = env.db();
    let out = env.run(&[
        "maintenance",
        "analyze",
        "--table",
        "metier.citoyens",
        "--table",
        "metier.nope",
    ]);
    out.code(1).one_line_error().stderr_has("metier.nope");
    if engine == Engine::Postgres {
        assert_eq!(
            pg_maintained(db, "metier.citoyens").0,
            "",
            "nothing ran on the target"
        );
    }
    let out = env.run(&[
        "--format",
        "json",
        "maintenance",
        "vacuum",
        "--table",
        "metier.nope",
    ]);
    out.code(1);
    let doc = out.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["targets"][0]["status"], "failed");
    assert!(
        doc["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("metier.nope"),
        "{}",
        out.stdout
    );
    // A name that is not SCHEMA.TABLE is a usage error.
    env.run(&["maintenance", "analyze", "--table", "a.b.c"])
        .code(2)
        .stderr_has("a.b.c");
}

fn slow_queries_list_a_statement_that_ran(engine: Engine) {
    let env = Env::with_schema(engine);
    let db = env.db();
    if engine == Engine::Mysql {
        // performance_schema's digest table is shared by every database of the server and
        // fills up with the test databases' statements; once full, new statements are only
        // counted under a NULL digest.
        let full = my_query(
            None,
            "SELECT COUNT(*) >= @@performance_schema_digests_size - 200
             FROM performance_schema.events_statements_summary_by_digest",
        );
        if full[0][0].as_deref() == Some("1") {
            my_query(
                None,
                "TRUNCATE TABLE performance_schema.events_statements_summary_by_digest",
            );
        }
    }
    if engine == Engine::Postgres
        && db.scalar("SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user")
            == Some("true".into())
    {
        // Servers where the test role is a superuser (CI containers) may lack the extension
        // in template1; scripts/dev-services.sh and docker/postgres-init.sql put it there.
        db.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    }
    for _ in 0..3 {
        db.query("SELECT count(*) AS slow_marker FROM metier.citoyens WHERE nom = 'slow-marker'");
    }
    let out = env.run(&[
        "--format",
        "json",
        "maintenance",
        "slow-queries",
        "--top",
        "1000",
    ]);
    out.success();
    let doc = out.json();
    assert_eq!(doc["status"], "success");
    let t = &doc["targets"][0];
    assert_eq!(t["status"], "success", "{}", out.stdout);
    let queries = t["queries"].as_array().unwrap();
    let q = queries
        .iter()
        .find(|q| {
            let text = q["query"].as_str().unwrap_or("").to_ascii_lowercase();
            text.contains("slow_marker") || text.contains("slow-marker")
        })
        .unwrap_or_else(|| panic!("the marker query is listed: {}", out.stdout));
    for key in ["calls", "total_ms", "mean_ms", "rows", "query"] {
        assert!(q.get(key).is_some(), "{key} in {q}");
    }
    assert!(q["calls"].as_i64().unwrap() >= 3, "{q}");
    assert!(q["total_ms"].as_f64().unwrap() >= 0.0, "{q}");
    // Normalised: the constant is gone.
    assert!(
        !q["query"].as_str().unwrap().contains("'slow-marker'"),
        "{q}"
    );
    // Ordered by total time.
    let totals: Vec<f64> = queries
        .iter()
        .map(|q| q["total_ms"].as_f64().unwrap())
        .collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
    env.run(&["maintenance", "slow-queries", "--top", "5"])
        .success()
        .stdout_has("mean ms");
}

#[test]
fn slow_queries_say_how_to_enable_pg_stat_statements() {
    // A database made from template0 has no extension at all.
    let name = format!("mdba_t_nopgss_{}", std::process::id());
    pg_query("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
    pg_query(
        "postgres",
        &format!("CREATE DATABASE {name} TEMPLATE template0"),
    );
    struct Drop_(String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            pg_query(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
            );
        }
    }
    let _drop = Drop_(name.clone());
    let env = Env::empty();
    env.write_pg_config(&name, "");
    env.write_global("");
    let out = env.run(&["maintenance", "slow-queries"]);
    out.code(1)
        .one_line_error()
        .stderr_has("pg_stat_statements is not installed")
        .stderr_has("shared_preload_libraries = 'pg_stat_statements'")
        .stderr_has("CREATE EXTENSION pg_stat_statements;");
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    let out = env.run(&["--format", "json", "maintenance", "slow-queries"]);
    out.code(1);
    let doc = out.json();
    assert_eq!(doc["status"], "failed");
    assert!(
        doc["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("CREATE EXTENSION"),
        "{}",
        out.stdout
    );
}

/// Journal rows: `old` of them 400 days old, `recent` of them from now.
fn plant_journal(db: &Db, old: u32, recent: u32) {
    let (old_time, now) = match db.engine() {
        Engine::Postgres => ("now() - interval '400 days'", "now()"),
        Engine::Mysql => ("UTC_TIMESTAMP(6) - INTERVAL 400 DAY", "UTC_TIMESTAMP(6)"),
    };
    let mut values = Vec::new();
    for i in 0..old + recent {
        let t = if i < old { old_time } else { now };
        values.push(format!("({t}, 'test', 'INSERT', 'metier.demandes', '{i}')"));
    }
    db.query(&format!(
        "INSERT INTO metier.journal_audit (horodatage, utilisateur, action, table_cible, cle) VALUES {}",
        values.join(", ")
    ));
}

fn cleanup_entry(out: &Run) -> Value {
    let doc = out.json();
    assert_eq!(doc["status"], "success", "{}", out.stdout);
    let t = doc["targets"][0].clone();
    for key in ["target", "status", "deleted", "batches", "seconds"] {
        assert!(t.get(key).is_some(), "{key} in {t}");
    }
    t
}

fn cleanup_deletes_exactly_the_old_journal_rows_in_batches(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write_global_replacing(
        "maintenance:\n  journal_table: metier.journal_audit\n  journal_time_column: horodatage\n  journal_retention_days: 30\n  batch_size: 2\n",
    );
    let db = env.db();
    plant_journal(db, 5, 3);
    assert_eq!(db.count("metier.journal_audit"), 8);

    let out = env.run(&["--format", "json", "maintenance", "cleanup", "--dry-run"]);
    out.success();
    let t = cleanup_entry(&out);
    assert_eq!(t["would_delete"], 5, "{t}");
    assert_eq!(t["deleted"], 0, "{t}");
    assert_eq!(
        db.count("metier.journal_audit"),
        8,
        "--dry-run deletes none"
    );

    let out = env.run(&["--format", "json", "maintenance", "cleanup"]);
    out.success();
    let t = cleanup_entry(&out);
    assert_eq!(t["status"], "success");
    assert_eq!(t["deleted"], 5, "{t}");
    assert_eq!(t["batches"], 3, "ceil(5 / 2) batches: {t}");
    assert_eq!(db.count("metier.journal_audit"), 3);
    let old = match engine {
        Engine::Postgres => "horodatage < now() - interval '30 days'",
        Engine::Mysql => "horodatage < UTC_TIMESTAMP(6) - INTERVAL 30 DAY",
    };
    assert_eq!(db.count_where("metier.journal_audit", old), 0);

    // Nothing left to purge: no batch deletes anything.
    let t = cleanup_entry(&env.run(&["--format", "json", "maintenance", "cleanup"]));
    assert_eq!(
        (t["deleted"].as_i64(), t["batches"].as_i64()),
        (Some(0), Some(0))
    );

    // --older-than-days overrides the configured retention.
    std::thread::sleep(std::time::Duration::from_millis(50));
    env.run(&["maintenance", "cleanup", "--older-than-days", "0"])
        .success()
        .stdout_has("deleted");
    assert_eq!(db.count("metier.journal_audit"), 0);
}

fn cleanup_configuration_errors(engine: Engine) {
    let env = Env::with_schema(engine);
    env.write_global_replacing("maintenance:\n  journal_table: metier.nope\n");
    env.run(&["maintenance", "cleanup"])
        .code(1)
        .one_line_error()
        .stderr_has("metier.nope");
    env.write_global_replacing("maintenance:\n  journal_time_column: quand\n");
    env.run(&["maintenance", "cleanup"])
        .code(1)
        .stderr_has("quand");
    env.write_global_replacing("maintenance:\n  batch_size: 0\n");
    env.run(&["maintenance", "cleanup"])
        .code(2)
        .stderr_has("maintenance.batch_size");
    env.write_global_replacing("maintenance:\n  journal_table: a.b.c\n");
    env.run(&["maintenance", "cleanup"])
        .code(2)
        .stderr_has("maintenance.journal_table");
}
