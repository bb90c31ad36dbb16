//! Stopping means stopped: a restore or a drill stopped by SIGTERM, or killed by SIGKILL,
//! leaves no tool running and no session of ours on the server a few seconds later; what it
//! created is dropped (or, after a kill, by the next drill); a failed restore drops the
//! database it made and reports the tool's error short, without the rows it was loading.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A database with one big table (restores take seconds) and backups configured, and one
/// backup taken.
fn with_big_backup(engine: Engine, rows: u32) -> Env {
    let env = Env::new(engine);
    let sql = match engine {
        Engine::Postgres => format!(
            "CREATE TABLE public.big AS SELECT g AS id, md5(g::text) || ' Estève-row-data' AS h \
             FROM generate_series(1, {rows}) g"
        ),
        // MariaDB's sequence engine.
        Engine::Mysql => format!(
            "CREATE TABLE big (id INT PRIMARY KEY, h VARCHAR(80)) AS \
             SELECT seq AS id, CONCAT(MD5(seq), ' Estève-row-data') AS h FROM seq_1_to_{rows}"
        ),
    };
    env.db().query(&sql);
    env.write_global(&format!(
        "backup:\n  {}:\n    dir: {}\n    keep_min: 3\n",
        engine.name(),
        env.path("backups").display()
    ));
    env.run(&["backup"]).success();
    env
}

fn drop_db(engine: Engine, name: &str) {
    match engine {
        Engine::Postgres => drop_pg_database(name),
        Engine::Mysql => {
            my_query(None, &format!("DROP DATABASE IF EXISTS `{name}`"));
        }
    }
}

struct DropDb(Engine, String);

impl Drop for DropDb {
    fn drop(&mut self) {
        drop_db(self.0, &self.1);
    }
}

/// Sessions on database `db` (any client).
fn sessions(engine: Engine, db: &str) -> i64 {
    let sql = match engine {
        Engine::Postgres => format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ),
        Engine::Mysql => format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{db}' AND ID <> CONNECTION_ID()"
        ),
    };
    let rows = match engine {
        Engine::Postgres => pg_query("postgres", &sql),
        Engine::Mysql => my_query(None, &sql),
    };
    rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
}

fn database_exists(engine: Engine, db: &str) -> bool {
    let rows = match engine {
        Engine::Postgres => pg_query(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
        ),
        Engine::Mysql => my_query(
            None,
            &format!("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"),
        ),
    };
    rows[0][0].as_deref() == Some("1")
}

/// Processes whose command line mentions `needle` (a database name on their `-d`).
fn processes_naming(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == needle) {
            out.push((pid, args.join(" ")));
        }
    }
    out
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not within {within:?}");
}

fn start(env: &Env, args: &[&str]) -> Child {
    env.command(&[], args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(mut child: Child) -> Run {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the stopped command did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    Run::from(child.wait_with_output().unwrap())
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill on a child of this test.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn a_restore_stopped_by_sigterm_stops_its_tools_and_drops_its_database() {
    let env = with_big_backup(Engine::Postgres, 1_500_000);
    let into = format!("{}_stopped", env.db().name());
    let _g = DropDb(Engine::Postgres, into.clone());
    let child = start(
        &env,
        &["restore", "--latest", "--into", &into, "--jobs", "2"],
    );
    wait_until("pg_restore loading", Duration::from_secs(60), || {
        sessions(Engine::Postgres, &into) > 0
    });
    // The tool got its own password and none of the tool's variables.
    let tool_of = |into: &str| {
        processes_naming(into)
            .into_iter()
            .find(|(_, c)| c.contains("pg_restore") && !c.contains("__supervise"))
    };
    // Read as seen: pg_restore's workers come and go between two looks.
    let mut environ = String::new();
    wait_until(
        "pg_restore started",
        Duration::from_secs(60),
        || match tool_of(&into)
            .and_then(|(pid, _)| std::fs::read(format!("/proc/{pid}/environ")).ok())
        {
            Some(bytes) => {
                environ = String::from_utf8_lossy(&bytes).into_owned();
                true
            }
            None => false,
        },
    );
    assert!(environ.contains("PGPASSWORD="), "the tool has its password");
    assert!(
        !environ.contains("MAIRIE_"),
        "no MAIRIE_* variable reaches a tool"
    );

    signal(&child, libc::SIGTERM);
    let out = finish(child);
    out.code(1)
        .stderr_has("stopped by SIGTERM")
        .stderr_has(&format!(
            "dropped the database(s) this run had created: {into}"
        ));
    wait_until("no tool left", Duration::from_secs(5), || {
        processes_naming(&into).is_empty()
    });
    wait_until("no session left", Duration::from_secs(5), || {
        sessions(Engine::Postgres, &into) == 0
    });
    assert!(!database_exists(Engine::Postgres, &into), "{into} dropped");
}

#[test]
fn a_restore_killed_by_sigkill_leaves_no_tool_running() {
    let env = with_big_backup(Engine::Postgres, 1_500_000);
    let into = format!("{}_killed", env.db().name());
    let _g = DropDb(Engine::Postgres, into.clone());
    let child = start(
        &env,
        &["restore", "--latest", "--into", &into, "--jobs", "2"],
    );
    wait_until("pg_restore loading", Duration::from_secs(60), || {
        sessions(Engine::Postgres, &into) > 0
    });
    signal(&child, libc::SIGKILL);
    finish(child);
    // The supervisor learns of the death from the kernel and kills the tool's group,
    // pg_restore's parallel workers included.
    wait_until("no tool left", Duration::from_secs(5), || {
        processes_naming(&into).is_empty()
    });
    wait_until("no session left", Duration::from_secs(5), || {
        sessions(Engine::Postgres, &into) == 0
    });
}

#[test]
fn a_killed_drill_leaves_its_scratch_database_to_the_next_drill() {
    let env = with_big_backup(Engine::Postgres, 1_500_000);
    let db = env.db().name().to_string();
    let scratch_of = |names: Vec<Vec<Option<String>>>| -> Vec<String> {
        names.into_iter().filter_map(|r| r[0].clone()).collect()
    };
    let list = || {
        scratch_of(pg_query(
            "postgres",
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{db}_drill_%'"),
        ))
    };
    // A user's database with a look-alike name, unmarked, is never touched.
    let lookalike = format!("{db}_drill_20200101000000");
    let _l = DropDb(Engine::Postgres, lookalike.clone());
    pg_query("postgres", &format!("CREATE DATABASE \"{lookalike}\""));

    let child = start(&env, &["restore", "--drill"]);
    wait_until("the drill loading", Duration::from_secs(60), || {
        list().len() == 2
    });
    let scratch = list().into_iter().find(|n| *n != lookalike).unwrap();
    let _s = DropDb(Engine::Postgres, scratch.clone());
    wait_until("the drill loading", Duration::from_secs(60), || {
        sessions(Engine::Postgres, &scratch) > 0
    });
    signal(&child, libc::SIGKILL);
    finish(child);
    wait_until("no tool left", Duration::from_secs(5), || {
        processes_naming(&scratch).is_empty()
    });
    assert!(
        database_exists(Engine::Postgres, &scratch),
        "left by the kill"
    );

    // The next drill (it may start within the same second: its own name differs by then).
    std::thread::sleep(Duration::from_millis(1100));
    let out = env.run(&["restore", "--drill"]);
    out.success().stderr_has(&format!(
        "dropped {scratch}, the scratch database of an earlier drill that was stopped"
    ));
    assert!(!database_exists(Engine::Postgres, &scratch));
    assert!(
        database_exists(Engine::Postgres, &lookalike),
        "unmarked: kept"
    );
    assert_eq!(
        list(),
        vec![lookalike.clone()],
        "the new drill dropped its own"
    );
}

per_engine!(
    a_failed_restore_drops_its_database_and_quotes_no_rows,
    a_backup_stopped_or_killed_leaves_no_tool_no_file_no_secret,
);

fn a_failed_restore_drops_its_database_and_quotes_no_rows(engine: Engine) {
    let env = with_big_backup(engine, 1_500_000);
    let into = format!("{}_failed", env.db().name());
    let _g = DropDb(engine, into.clone());
    let mut child = start(&env, &["restore", "--latest", "--into", &into]);
    // Once the tool loads, the server ends its sessions (a crash, an administrator), again
    // and again until the restore gives up.
    let loading = |into: &str| {
        processes_naming(into).into_iter().any(|(_, c)| {
            let program = c.split(' ').next().unwrap_or_default();
            !c.contains("__supervise")
                && (program.ends_with("pg_restore") || program.ends_with("mariadb"))
        })
    };
    wait_until("the tool loading", Duration::from_secs(60), || {
        loading(&into) && sessions(engine, &into) > 0
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        match engine {
            Engine::Postgres => {
                pg_query(
                    "postgres",
                    &format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{into}'"
                    ),
                );
            }
            Engine::Mysql => {
                for r in my_query(
                    None,
                    &format!(
                        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{into}' AND ID <> CONNECTION_ID()"
                    ),
                ) {
                    if let Some(id) = &r[0] {
                        my_query(None, &format!("KILL {id}"));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = finish(child);
    out.code(1).one_line_error().stderr_has(&format!(
        "database {into} (created by this restore) was dropped"
    ));
    assert!(
        out.stderr.len() < 2048,
        "error of {} bytes",
        out.stderr.len()
    );
    assert!(
        !out.stderr.contains("Estève-row-data"),
        "rows in the error: {}",
        out.stderr
    );
    assert!(!database_exists(engine, &into));
}

/// The backup files of the env's directory (no hidden files: lock, run record).
fn backup_files(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.path("backups"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The private option-file directories of a process (`mairie-dba-<pid>-…` in the temp dir).
fn private_dirs_of(pid: u32) -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("mairie-dba-{pid}-")))
        .collect()
}

/// A session that holds a lock on `big` that every dump waits behind, so that a signal
/// surely reaches a backup while its dump runs (under load, a dump seen running may
/// otherwise end before the signal is sent). Released when dropped.
struct BigLocked {
    rt: tokio::runtime::Runtime,
    session: Session,
}

enum Session {
    Pg(tokio_postgres::Client),
    My(Option<mysql_async::Conn>),
}

impl BigLocked {
    fn new(db: &Db) -> BigLocked {
        use mysql_async::prelude::Queryable;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let session = rt.block_on(async {
            match db.engine() {
                Engine::Postgres => {
                    let dsn = format!("{} dbname={}", pg_admin_dsn(), db.name());
                    let (client, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                        .await
                        .expect("connecting to lock big");
                    tokio::spawn(conn);
                    client
                        .batch_execute("BEGIN; LOCK TABLE public.big IN ACCESS EXCLUSIVE MODE")
                        .await
                        .expect("locking big");
                    Session::Pg(client)
                }
                Engine::Mysql => {
                    let opts = mysql_async::OptsBuilder::from_opts(
                        mysql_async::Opts::from_url(&mysql_url()).unwrap(),
                    )
                    .db_name(Some(db.name()));
                    let mut conn = mysql_async::Conn::new(opts)
                        .await
                        .expect("connecting to lock big");
                    conn.query_drop("LOCK TABLES big WRITE")
                        .await
                        .expect("locking big");
                    Session::My(Some(conn))
                }
            }
        });
        BigLocked { rt, session }
    }
}

impl Drop for BigLocked {
    fn drop(&mut self) {
        use mysql_async::prelude::Queryable;
        let session = &mut self.session;
        self.rt.block_on(async {
            match session {
                Session::Pg(c) => {
                    let _ = c.batch_execute("COMMIT").await;
                }
                Session::My(c) => {
                    if let Some(mut c) = c.take() {
                        let _ = c.query_drop("UNLOCK TABLES").await;
                        let _ = c.disconnect().await;
                    }
                }
            }
        });
    }
}

fn a_backup_stopped_or_killed_leaves_no_tool_no_file_no_secret(engine: Engine) {
    let env = with_big_backup(engine, 200_000);
    let db = env.db().name().to_string();
    let before = backup_files(&env);
    let dumping = |db: &str| {
        processes_naming(db)
            .into_iter()
            .any(|(_, c)| c.contains("dump") && !c.contains("__supervise"))
    };
    let locked = BigLocked::new(env.db());
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        std::thread::sleep(Duration::from_millis(1100)); // a new file name
        let child = start(&env, &["backup"]);
        let pid = child.id();
        wait_until("the dump running", Duration::from_secs(60), || dumping(&db));
        signal(&child, sig);
        let out = finish(child);
        wait_until("no dump left", Duration::from_secs(5), || !dumping(&db));
        if sig == libc::SIGTERM {
            out.code(1)
                .stderr_has("stopped by SIGTERM")
                .stderr_has("removed the unfinished file(s)");
            assert_eq!(backup_files(&env), before, "a stopped backup left a file");
            assert_eq!(
                private_dirs_of(pid),
                Vec::<String>::new(),
                "option files left"
            );
        }
    }
    drop(locked);
    // After the kill, the next run clears what it left (the .partial) and succeeds.
    std::thread::sleep(Duration::from_millis(1100));
    env.run(&["backup"]).success();
    assert!(
        backup_files(&env).iter().all(|f| !f.ends_with(".partial")),
        "{:?}",
        backup_files(&env)
    );
}
