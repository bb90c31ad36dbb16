//! A backup states what its file holds: rows written to the tables while the dump runs do
//! not make the manifest disagree with the file (a drill afterwards finds the same counts).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;

#[test]
fn mysql_inserts_during_a_backup_do_not_make_the_drill_fail() {
    let env = Env::new(Engine::Mysql);
    let db = env.db().name().to_string();
    // Big enough for the dump to last while rows keep arriving (MariaDB's sequence engine).
    env.db().query(
        "CREATE TABLE ins (id INT AUTO_INCREMENT PRIMARY KEY, h VARCHAR(40)) AS \
         SELECT NULL AS id, MD5(seq) AS h FROM seq_1_to_300000",
    );
    env.write_global(&format!(
        "backup:\n  mysql:\n    dir: {}\n    keep_min: 3\n",
        env.path("backups").display()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let inserted = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, inserted, db) = (stop.clone(), inserted.clone(), db.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                my_query(Some(&db), "INSERT INTO ins (h) VALUES ('during the dump')");
                inserted.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Rows are arriving before the backup starts and after it ends.
    while inserted.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = env.run(&["--format", "json", "backup"]);
    let during = inserted.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    out.success();
    assert!(during > 20, "rows arrived during the backup");
    let drill = env.run(&["--format", "json", "restore", "--drill"]);
    drill.success();
    let j = drill.json();
    assert_eq!(j["drills"][0]["status"], "success", "{}", drill.stdout);
    assert_eq!(j["drills"][0]["differences"], serde_json::json!([]));
}
