-- V003 : schéma « reporting » (vues de pilotage, lecture seule).
-- Crée :
--   * le schéma reporting ;
--   * reporting.demandes_par_service : volumes par service et par statut, délai moyen ;
--   * reporting.demandes_par_type : volumes, délai moyen et dépassements de délai par type ;
--   * reporting.demandes_par_arrondissement : volumes par arrondissement (les 16, 0 si aucune) ;
--   * reporting.rendez_vous_a_venir : rendez-vous planifiés ou confirmés à partir de maintenant.
-- Dépend de V001 et V002. Les délais sont exprimés en jours décimaux (date_cloture - date_depot).

CREATE SCHEMA reporting;
COMMENT ON SCHEMA reporting IS
    'Vues de pilotage et de suivi d''activité, en lecture seule, sur les schémas referentiel et metier.';

-- ---------------------------------------------------------------------------
-- Demandes par service (tous les services, y compris sans demande)
-- ---------------------------------------------------------------------------
CREATE VIEW reporting.demandes_par_service AS
SELECT
    s.id                                                  AS service_id,
    s.code                                                AS service_code,
    s.nom                                                 AS service_nom,
    s.direction,
    s.actif,
    count(d.id)                                           AS total,
    count(d.id) FILTER (WHERE d.statut = 'deposee')       AS deposees,
    count(d.id) FILTER (WHERE d.statut = 'en_cours')      AS en_cours,
    count(d.id) FILTER (WHERE d.statut = 'en_attente')    AS en_attente,
    count(d.id) FILTER (WHERE d.statut = 'acceptee')      AS acceptees,
    count(d.id) FILTER (WHERE d.statut = 'refusee')       AS refusees,
    count(d.id) FILTER (WHERE d.statut = 'cloturee')      AS cloturees,
    round(avg(extract(epoch FROM d.date_cloture - d.date_depot) / 86400.0)
              FILTER (WHERE d.date_cloture IS NOT NULL), 1)  AS delai_moyen_jours
FROM referentiel.services AS s
LEFT JOIN metier.demandes AS d ON d.service_id = s.id
GROUP BY s.id, s.code, s.nom, s.direction, s.actif
ORDER BY s.id;

COMMENT ON VIEW reporting.demandes_par_service IS
    'Nombre de demandes par service et par statut ; délai moyen de traitement (jours) des demandes closes.';
COMMENT ON COLUMN reporting.demandes_par_service.total IS 'Nombre total de demandes instruites par le service.';
COMMENT ON COLUMN reporting.demandes_par_service.delai_moyen_jours IS
    'Délai moyen dépôt -> clôture en jours, sur les demandes closes (NULL si aucune).';

-- ---------------------------------------------------------------------------
-- Demandes par type (tous les types, y compris sans demande)
-- ---------------------------------------------------------------------------
CREATE VIEW reporting.demandes_par_type AS
SELECT
    t.code                                                AS type_code,
    t.libelle,
    t.categorie,
    s.code                                                AS service_code,
    t.delai_traitement_jours                              AS delai_cible_jours,
    count(d.id)                                           AS total,
    count(d.id) FILTER (WHERE d.date_cloture IS NULL)     AS ouvertes,
    count(d.id) FILTER (WHERE d.statut = 'acceptee')      AS acceptees,
    count(d.id) FILTER (WHERE d.statut = 'refusee')       AS refusees,
    count(d.id) FILTER (WHERE d.statut = 'cloturee')      AS cloturees,
    round(avg(extract(epoch FROM d.date_cloture - d.date_depot) / 86400.0)
              FILTER (WHERE d.date_cloture IS NOT NULL), 1)  AS delai_moyen_jours,
    count(d.id) FILTER (WHERE d.date_cloture IS NOT NULL
                          AND d.date_cloture > d.date_depot + make_interval(days => t.delai_traitement_jours))
                                                          AS closes_hors_delai,
    coalesce(sum(d.montant_frais), 0)::numeric(12,2)      AS montant_frais_total
FROM referentiel.types_demande AS t
JOIN referentiel.services AS s ON s.id = t.service_id
LEFT JOIN metier.demandes AS d ON d.type_code = t.code
GROUP BY t.code, t.libelle, t.categorie, s.code, t.delai_traitement_jours
ORDER BY t.categorie, t.code;

COMMENT ON VIEW reporting.demandes_par_type IS
    'Nombre de demandes par type, délai moyen constaté, demandes closes au-delà du délai cible, frais perçus.';
COMMENT ON COLUMN reporting.demandes_par_type.ouvertes IS 'Demandes non closes (deposee, en_cours, en_attente).';
COMMENT ON COLUMN reporting.demandes_par_type.closes_hors_delai IS
    'Demandes closes après dépôt + delai_traitement_jours.';

-- ---------------------------------------------------------------------------
-- Demandes par arrondissement (les 16 arrondissements, 0 si aucune demande)
-- ---------------------------------------------------------------------------
CREATE VIEW reporting.demandes_par_arrondissement AS
SELECT
    a.numero                                              AS arrondissement,
    a.code_postal,
    a.nom,
    a.secteur,
    a.population,
    count(d.id)                                           AS total,
    count(d.id) FILTER (WHERE d.date_cloture IS NULL)     AS ouvertes,
    count(d.id) FILTER (WHERE d.date_cloture IS NOT NULL) AS closes,
    CASE WHEN a.population > 0
         THEN round(count(d.id) * 10000.0 / a.population, 2)
    END                                                   AS pour_10000_habitants
FROM referentiel.arrondissements AS a
LEFT JOIN metier.demandes AS d ON d.arrondissement = a.numero
GROUP BY a.numero, a.code_postal, a.nom, a.secteur, a.population
ORDER BY a.numero;

COMMENT ON VIEW reporting.demandes_par_arrondissement IS
    'Nombre de demandes par arrondissement ; les 16 arrondissements apparaissent toujours (0 si aucune demande).';
COMMENT ON COLUMN reporting.demandes_par_arrondissement.pour_10000_habitants IS
    'Nombre de demandes rapporté à la population (pour 10 000 habitants).';

-- ---------------------------------------------------------------------------
-- Rendez-vous à venir
-- ---------------------------------------------------------------------------
CREATE VIEW reporting.rendez_vous_a_venir AS
SELECT
    r.id                                                  AS rendez_vous_id,
    r.debut,
    r.debut + make_interval(mins => r.duree_minutes)      AS fin,
    r.duree_minutes,
    r.statut,
    r.lieu,
    s.code                                                AS service_code,
    s.nom                                                 AS service_nom,
    c.id                                                  AS citoyen_id,
    c.civilite,
    c.nom,
    c.prenom,
    c.telephone,
    c.email,
    d.reference                                           AS demande_reference
FROM metier.rendez_vous AS r
JOIN metier.citoyens AS c ON c.id = r.citoyen_id
JOIN referentiel.services AS s ON s.id = r.service_id
LEFT JOIN metier.demandes AS d ON d.id = r.demande_id
WHERE r.debut >= now()
  AND r.statut IN ('planifie', 'confirme')
ORDER BY r.debut, r.id;

COMMENT ON VIEW reporting.rendez_vous_a_venir IS
    'Rendez-vous planifiés ou confirmés dont le début est postérieur ou égal à maintenant, par ordre chronologique.';
COMMENT ON COLUMN reporting.rendez_vous_a_venir.fin IS 'Fin du créneau (debut + duree_minutes).';
COMMENT ON COLUMN reporting.rendez_vous_a_venir.demande_reference IS 'Référence de la demande liée, NULL si aucune.';
