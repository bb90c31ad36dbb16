//! `privacy report` and the retention purge of `maintenance cleanup --privacy`, against
//! real PostgreSQL and MariaDB servers with the demo data and a few constructed old rows.

mod common;

use common::*;

per_engine!(
    report_shows_ruled_columns_and_rows_past_retention,
    retention_purge_deletes_exactly_the_old_rows_in_batches,
    retention_columns_date_the_rows_of_any_table,
);

fn env_with_data(engine: Engine) -> Env {
    let env = Env::new(engine);
    env.write_global(
        "privacy:\n  rules:\n    metier.citoyens.nom: fake\n    metier.citoyens.email: email\n  \
         retention_years:\n    metier.rendez_vous: 2\n\
         erasure:\n  tables:\n    metier.demandes: pseudonymize\n    metier.rendez_vous: delete\n\
         maintenance:\n  batch_size: 2\n",
    );
    env.run(&["schema", "apply"]).success();
    env.run(&["load-csv", "--all"]).success();
    // Old rows: three citizens inscribed long ago, one with an old closed demande and an old
    // rendez-vous, one with a recent rendez-vous (kept), one with nothing (purged).
    let db = env.db();
    // The demo citizens are all recent here: only the constructed ones are old.
    db.query("UPDATE metier.citoyens SET date_inscription = CURRENT_TIMESTAMP");
    db.query(
        "INSERT INTO metier.citoyens (id, civilite, nom, prenom, date_naissance, email, adresse, \
         code_postal, arrondissement, date_inscription) VALUES \
         (9001, 'M', 'Ancien', 'Un', '1950-01-01', NULL, '1 rue A', '13001', 1, '2010-01-01 10:00:00'), \
         (9002, 'M', 'Ancien', 'Deux', '1950-01-01', NULL, '2 rue A', '13001', 1, '2010-01-01 10:00:00'), \
         (9003, 'M', 'Ancien', 'Trois', '1950-01-01', NULL, '3 rue A', '13001', 1, '2010-01-01 10:00:00')",
    );
    let service = db
        .scalar("SELECT min(id) FROM referentiel.services")
        .unwrap();
    let typ = db
        .scalar("SELECT min(code) FROM referentiel.types_demande")
        .unwrap();
    db.query(&format!(
        "INSERT INTO metier.demandes (id, reference, citoyen_id, type_code, service_id, arrondissement, \
         statut, date_depot, date_cloture) VALUES \
         (9001, 'DEM-OLD-1', 9001, '{typ}', {service}, 1, 'cloturee', '2011-01-01 10:00:00', '2011-02-01 10:00:00')"
    ));
    db.query(&format!(
        "INSERT INTO metier.rendez_vous (id, citoyen_id, service_id, demande_id, debut, duree_minutes, statut, lieu) VALUES \
         (9001, 9001, {service}, 9001, '2011-01-15 10:00:00', 15, 'honore', 'Mairie'), \
         (9002, 9002, {service}, NULL, '2099-01-15 10:00:00', 15, 'planifie', 'Mairie')"
    ));
    env
}

fn report_shows_ruled_columns_and_rows_past_retention(engine: Engine) {
    let env = env_with_data(engine);
    let out = env.run(&["--format", "json", "privacy", "report"]);
    out.success();
    let doc = out.json();
    let t = &doc["targets"][0];
    let cols = t["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 2, "{}", out.stdout);
    assert_eq!(cols[0]["column"], "metier.citoyens.nom");
    assert_eq!(cols[0]["strategy"], "fake");
    assert_eq!(cols[0]["present"], true);
    // The columns the rules forget are listed, the ruled ones are not.
    let suspected: Vec<String> = t["suspected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["column"].as_str().unwrap().to_string())
        .collect();
    for c in ["metier.citoyens.prenom", "metier.citoyens.telephone"] {
        assert!(suspected.iter().any(|s| s == c), "{c} in {suspected:?}");
    }
    assert!(
        !suspected.iter().any(|s| s == "metier.citoyens.nom"),
        "{suspected:?}"
    );
    assert!(t["suspected"][0]["reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    let ret = t["retention"].as_array().unwrap();
    let find = |name: &str| {
        ret.iter()
            .find(|r| r["table"] == name)
            .unwrap_or_else(|| panic!("{name} in {}", out.stdout))
            .clone()
    };
    let rdv = find("metier.rendez_vous");
    assert_eq!(rdv["years"], 2);
    assert_eq!(rdv["column"], "debut");
    let old_rdv = env.db().count_where(
        "metier.rendez_vous",
        &match engine {
            Engine::Postgres => "debut < now() - interval '2 years'".to_string(),
            Engine::Mysql => "debut < UTC_TIMESTAMP() - INTERVAL 2 YEAR".to_string(),
        },
    );
    assert_eq!(rdv["rows"], old_rdv, "{}", out.stdout);
    assert!(rdv["oldest"].as_str().unwrap().starts_with("2011-01-15"));
    assert_eq!(rdv["batches"], (old_rdv + 1) / 2);
    // Citizens: the one with nothing, and the one whose old rows go with it; not the one
    // with a future rendez-vous.
    let cit = find("metier.citoyens");
    assert_eq!(cit["rows"], 2, "{}", out.stdout);
    assert_eq!(find("metier.demandes")["rows"], 1, "{}", out.stdout);
    env.run(&["privacy", "report"])
        .success()
        .stdout_has("metier.citoyens.email")
        .stdout_has("personal-looking columns without a rule")
        .stdout_has("purge batches");
}

fn retention_purge_deletes_exactly_the_old_rows_in_batches(engine: Engine) {
    let env = env_with_data(engine);
    let db = env.db();
    let before: Vec<i64> = ["metier.citoyens", "metier.demandes", "metier.rendez_vous"]
        .iter()
        .map(|t| db.count(t))
        .collect();
    let dry = env.run(&[
        "--format",
        "json",
        "maintenance",
        "cleanup",
        "--privacy",
        "--dry-run",
    ]);
    dry.success();
    let tables = dry.json()["privacy"][0]["tables"]
        .as_array()
        .unwrap()
        .clone();
    let older = |name: &str| {
        tables.iter().find(|t| t["table"] == name).unwrap()["older"]
            .as_i64()
            .unwrap()
    };
    let (old_c, old_d, old_r) = (
        older("metier.citoyens"),
        older("metier.demandes"),
        older("metier.rendez_vous"),
    );
    assert_eq!(old_c, 2, "{}", dry.stdout);
    assert_eq!(
        db.count("metier.citoyens"),
        before[0],
        "dry run changes nothing"
    );

    let out = env.run(&["--format", "json", "maintenance", "cleanup", "--privacy"]);
    out.success();
    let doc = out.json();
    let done = doc["privacy"][0]["tables"].as_array().unwrap();
    let order: Vec<&str> = done.iter().map(|t| t["table"].as_str().unwrap()).collect();
    let pos = |n: &str| order.iter().position(|t| *t == n).unwrap();
    assert!(pos("metier.rendez_vous") < pos("metier.demandes"));
    assert!(pos("metier.demandes") < pos("metier.citoyens"));
    let rdv = done
        .iter()
        .find(|t| t["table"] == "metier.rendez_vous")
        .unwrap();
    assert_eq!(rdv["deleted"], old_r);
    assert_eq!(rdv["batches"].as_i64().unwrap(), (old_r + 1) / 2);
    assert_eq!(db.count("metier.rendez_vous"), before[2] - old_r);
    assert_eq!(db.count("metier.demandes"), before[1] - old_d);
    assert_eq!(db.count("metier.citoyens"), before[0] - old_c);
    assert_eq!(db.count_where("metier.citoyens", "id IN (9001, 9003)"), 0);
    assert_eq!(db.count_where("metier.citoyens", "id = 9002"), 1);
}

fn retention_columns_date_the_rows_of_any_table(engine: Engine) {
    let env = env_with_data(engine);
    let db = env.db();
    db.query("CREATE TABLE metier.notes (id int PRIMARY KEY, ecrit_le date)");
    db.query(
        "INSERT INTO metier.notes VALUES (1, '2001-01-01'), (2, '2002-06-01'), (3, '2099-01-01'), (4, NULL)",
    );
    let global = |column: &str| {
        format!(
            "privacy:\n  retention_years:\n    metier.notes: 3\n  retention_columns:\n    \
             metier.notes: {column}\nmaintenance:\n  batch_size: 2\n"
        )
    };
    env.write_global(&global("ecrit_le"));
    let out = env.run(&["--format", "json", "privacy", "report"]);
    out.success();
    let doc = out.json();
    let notes = doc["targets"][0]["retention"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == "metier.notes")
        .unwrap_or_else(|| panic!("metier.notes in {}", out.stdout))
        .clone();
    assert_eq!(notes["column"], "ecrit_le");
    assert_eq!(notes["years"], 3);
    assert_eq!(notes["rows"], 2, "{}", out.stdout);
    env.run(&["maintenance", "cleanup", "--privacy"]).success();
    assert_eq!(db.count("metier.notes"), 2);
    assert_eq!(db.count_where("metier.notes", "id IN (3, 4)"), 2);
    // A column the table lacks fails the target, the error naming the key; nothing is purged.
    env.write_global(&global("cree_le"));
    env.run(&["maintenance", "cleanup", "--privacy"])
        .code(1)
        .stderr_has("privacy.retention_columns.metier.notes: metier.notes has no column cree_le");
    db.query("DROP TABLE metier.notes");
}
