-- V003 : « reporting » (vues de pilotage, lecture seule), version MySQL 8 / MariaDB 10.11.
-- Crée :
--   * reporting_demandes_par_service : volumes par service et par statut, délai moyen
--   * reporting_demandes_par_type : volumes, délai moyen et dépassements de délai par type
--   * reporting_demandes_par_arrondissement : volumes par arrondissement (les 16, 0 si aucune)
--   * reporting_rendez_vous_a_venir : rendez-vous planifiés ou confirmés à partir de maintenant
-- Dépend de V001 et V002. Les délais sont exprimés en jours décimaux (date_cloture - date_depot).
-- Mêmes colonnes, dans le même ordre, que les vues PostgreSQL. Traduction :
--   count(x) FILTER (WHERE c)      -> COUNT(CASE WHEN c THEN x END) (0, jamais NULL, sans ligne)
--   avg(...) FILTER (WHERE c)      -> AVG(CASE WHEN c THEN ... END)
--   extract(epoch FROM b - a) / 86400.0
--                                  -> TIMESTAMPDIFF(MICROSECOND, a, b) / 86400000000.0
--   a + make_interval(days => n)   -> a + INTERVAL n DAY
--   now()                          -> UTC_TIMESTAMP(6), les horodatages étant enregistrés en UTC
-- MySQL ne connaît pas COMMENT ON VIEW : les descriptions des vues et des colonnes sont
-- les commentaires SQL ci-dessous.

-- ---------------------------------------------------------------------------
-- Demandes par service (tous les services, y compris sans demande)
-- Nombre de demandes par service et par statut, délai moyen de traitement (jours) des
-- demandes closes.
--   total : nombre total de demandes instruites par le service
--   delai_moyen_jours : délai moyen dépôt -> clôture en jours, sur les demandes closes
--     (NULL si aucune)
-- ---------------------------------------------------------------------------
CREATE OR REPLACE VIEW reporting_demandes_par_service AS
SELECT
    s.id                                                          AS service_id,
    s.code                                                        AS service_code,
    s.nom                                                         AS service_nom,
    s.direction,
    s.actif,
    COUNT(d.id)                                                   AS total,
    COUNT(CASE WHEN d.statut = 'deposee'    THEN d.id END)        AS deposees,
    COUNT(CASE WHEN d.statut = 'en_cours'   THEN d.id END)        AS en_cours,
    COUNT(CASE WHEN d.statut = 'en_attente' THEN d.id END)        AS en_attente,
    COUNT(CASE WHEN d.statut = 'acceptee'   THEN d.id END)        AS acceptees,
    COUNT(CASE WHEN d.statut = 'refusee'    THEN d.id END)        AS refusees,
    COUNT(CASE WHEN d.statut = 'cloturee'   THEN d.id END)        AS cloturees,
    ROUND(AVG(CASE WHEN d.date_cloture IS NOT NULL
                   THEN TIMESTAMPDIFF(MICROSECOND, d.date_depot, d.date_cloture) / 86400000000.0
              END), 1)                                            AS delai_moyen_jours
FROM referentiel_services AS s
LEFT JOIN metier_demandes AS d ON d.service_id = s.id
GROUP BY s.id, s.code, s.nom, s.direction, s.actif
ORDER BY s.id;

-- ---------------------------------------------------------------------------
-- Demandes par type (tous les types, y compris sans demande)
-- Nombre de demandes par type, délai moyen constaté, demandes closes au-delà du délai
-- cible, frais perçus.
--   ouvertes : demandes non closes (deposee, en_cours, en_attente)
--   closes_hors_delai : demandes closes après dépôt + delai_traitement_jours
-- ---------------------------------------------------------------------------
CREATE OR REPLACE VIEW reporting_demandes_par_type AS
SELECT
    t.code                                                        AS type_code,
    t.libelle,
    t.categorie,
    s.code                                                        AS service_code,
    t.delai_traitement_jours                                      AS delai_cible_jours,
    COUNT(d.id)                                                   AS total,
    COUNT(CASE WHEN d.date_cloture IS NULL  THEN d.id END)        AS ouvertes,
    COUNT(CASE WHEN d.statut = 'acceptee'   THEN d.id END)        AS acceptees,
    COUNT(CASE WHEN d.statut = 'refusee'    THEN d.id END)        AS refusees,
    COUNT(CASE WHEN d.statut = 'cloturee'   THEN d.id END)        AS cloturees,
    ROUND(AVG(CASE WHEN d.date_cloture IS NOT NULL
                   THEN TIMESTAMPDIFF(MICROSECOND, d.date_depot, d.date_cloture) / 86400000000.0
              END), 1)                                            AS delai_moyen_jours,
    COUNT(CASE WHEN d.date_cloture IS NOT NULL
                AND d.date_cloture > d.date_depot + INTERVAL t.delai_traitement_jours DAY
               THEN d.id END)                                     AS closes_hors_delai,
    CAST(COALESCE(SUM(d.montant_frais), 0) AS DECIMAL(12,2))      AS montant_frais_total
FROM referentiel_types_demande AS t
JOIN referentiel_services AS s ON s.id = t.service_id
LEFT JOIN metier_demandes AS d ON d.type_code = t.code
GROUP BY t.code, t.libelle, t.categorie, s.code, t.delai_traitement_jours
ORDER BY t.categorie, t.code;

-- ---------------------------------------------------------------------------
-- Demandes par arrondissement (les 16 arrondissements, 0 si aucune demande)
--   pour_10000_habitants : nombre de demandes rapporté à la population (pour 10 000 habitants)
-- ---------------------------------------------------------------------------
CREATE OR REPLACE VIEW reporting_demandes_par_arrondissement AS
SELECT
    a.numero                                                      AS arrondissement,
    a.code_postal,
    a.nom,
    a.secteur,
    a.population,
    COUNT(d.id)                                                   AS total,
    COUNT(CASE WHEN d.date_cloture IS NULL     THEN d.id END)     AS ouvertes,
    COUNT(CASE WHEN d.date_cloture IS NOT NULL THEN d.id END)     AS closes,
    CASE WHEN a.population > 0
         THEN ROUND(COUNT(d.id) * 10000.0 / a.population, 2)
    END                                                           AS pour_10000_habitants
FROM referentiel_arrondissements AS a
LEFT JOIN metier_demandes AS d ON d.arrondissement = a.numero
GROUP BY a.numero, a.code_postal, a.nom, a.secteur, a.population
ORDER BY a.numero;

-- ---------------------------------------------------------------------------
-- Rendez-vous à venir
-- Rendez-vous planifiés ou confirmés dont le début est postérieur ou égal à maintenant
-- (heure UTC, comme les horodatages enregistrés), par ordre chronologique.
--   fin : fin du créneau (debut + duree_minutes)
--   demande_reference : référence de la demande liée, NULL si aucune
-- ---------------------------------------------------------------------------
CREATE OR REPLACE VIEW reporting_rendez_vous_a_venir AS
SELECT
    r.id                                                          AS rendez_vous_id,
    r.debut,
    r.debut + INTERVAL r.duree_minutes MINUTE                     AS fin,
    r.duree_minutes,
    r.statut,
    r.lieu,
    s.code                                                        AS service_code,
    s.nom                                                         AS service_nom,
    c.id                                                          AS citoyen_id,
    c.civilite,
    c.nom,
    c.prenom,
    c.telephone,
    c.email,
    d.reference                                                   AS demande_reference
FROM metier_rendez_vous AS r
JOIN metier_citoyens AS c ON c.id = r.citoyen_id
JOIN referentiel_services AS s ON s.id = r.service_id
LEFT JOIN metier_demandes AS d ON d.id = r.demande_id
WHERE r.debut >= UTC_TIMESTAMP(6)
  AND r.statut IN ('planifie', 'confirme')
ORDER BY r.debut, r.id;
