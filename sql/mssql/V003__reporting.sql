-- V003 : schéma « reporting » (vues de pilotage, lecture seule), version SQL Server 2019/2022.
-- Crée :
--   * le schéma reporting
--   * reporting.demandes_par_service : volumes par service et par statut, délai moyen
--   * reporting.demandes_par_type : volumes, délai moyen et dépassements de délai par type
--   * reporting.demandes_par_arrondissement : volumes par arrondissement (les 16, 0 si aucune)
--   * reporting.rendez_vous_a_venir : rendez-vous planifiés ou confirmés à partir de maintenant
-- Dépend de V001 et V002. Les délais sont exprimés en jours décimaux (date_cloture - date_depot).
-- Mêmes colonnes, dans le même ordre, que les vues PostgreSQL. Traduction :
--   count(x) FILTER (WHERE c)      -> COUNT_BIG(CASE WHEN c THEN x END) (bigint, comme count)
--   avg(...) FILTER (WHERE c)      -> AVG(CASE WHEN c THEN ... END)
--   extract(epoch FROM b - a) / 86400.0
--                                  -> DATEDIFF_BIG(MILLISECOND, a, b) / 86400000.0
--   round(x, n)                    -> CAST(ROUND(x, n) AS DECIMAL(p, n))
--   a + make_interval(...)         -> DATEADD(DAY | MINUTE, n, a)
--   now()                          -> SYSDATETIMEOFFSET()
-- Une vue SQL Server ne peut pas porter d'ORDER BY (sans TOP, qui ne garantirait d'ailleurs
-- pas l'ordre) : l'ordre des vues PostgreSQL est à demander par la requête qui les lit
-- (ORDER BY service_id, ORDER BY categorie, type_code, ORDER BY arrondissement,
-- ORDER BY debut, rendez_vous_id).

SET ANSI_NULLS ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET QUOTED_IDENTIFIER ON;
SET NUMERIC_ROUNDABORT OFF;
GO

CREATE SCHEMA reporting;
GO

-- ---------------------------------------------------------------------------
-- Demandes par service (tous les services, y compris sans demande)
-- ---------------------------------------------------------------------------
CREATE VIEW reporting.demandes_par_service AS
SELECT
    s.id                                                          AS service_id,
    s.code                                                        AS service_code,
    s.nom                                                         AS service_nom,
    s.direction,
    s.actif,
    COUNT_BIG(d.id)                                               AS total,
    COUNT_BIG(CASE WHEN d.statut = N'deposee'    THEN d.id END)   AS deposees,
    COUNT_BIG(CASE WHEN d.statut = N'en_cours'   THEN d.id END)   AS en_cours,
    COUNT_BIG(CASE WHEN d.statut = N'en_attente' THEN d.id END)   AS en_attente,
    COUNT_BIG(CASE WHEN d.statut = N'acceptee'   THEN d.id END)   AS acceptees,
    COUNT_BIG(CASE WHEN d.statut = N'refusee'    THEN d.id END)   AS refusees,
    COUNT_BIG(CASE WHEN d.statut = N'cloturee'   THEN d.id END)   AS cloturees,
    CAST(ROUND(AVG(CASE WHEN d.date_cloture IS NOT NULL
                        THEN DATEDIFF_BIG(MILLISECOND, d.date_depot, d.date_cloture) / 86400000.0
                   END), 1) AS DECIMAL(12,1))                     AS delai_moyen_jours
FROM referentiel.services AS s
LEFT JOIN metier.demandes AS d ON d.service_id = s.id
GROUP BY s.id, s.code, s.nom, s.direction, s.actif;
GO

-- ---------------------------------------------------------------------------
-- Demandes par type (tous les types, y compris sans demande)
-- ---------------------------------------------------------------------------
CREATE VIEW reporting.demandes_par_type AS
SELECT
    t.code                                                        AS type_code,
    t.libelle,
    t.categorie,
    s.code                                                        AS service_code,
    t.delai_traitement_jours                                      AS delai_cible_jours,
    COUNT_BIG(d.id)                                               AS total,
    COUNT_BIG(CASE WHEN d.date_cloture IS NULL   THEN d.id END)   AS ouvertes,
    COUNT_BIG(CASE WHEN d.statut = N'acceptee'   THEN d.id END)   AS acceptees,
    COUNT_BIG(CASE WHEN d.statut = N'refusee'    THEN d.id END)   AS refusees,
    COUNT_BIG(CASE WHEN d.statut = N'cloturee'   THEN d.id END)   AS cloturees,
    CAST(ROUND(AVG(CASE WHEN d.date_cloture IS NOT NULL
                        THEN DATEDIFF_BIG(MILLISECOND, d.date_depot, d.date_cloture) / 86400000.0
                   END), 1) AS DECIMAL(12,1))                     AS delai_moyen_jours,
    COUNT_BIG(CASE WHEN d.date_cloture IS NOT NULL
                    AND d.date_cloture > DATEADD(DAY, t.delai_traitement_jours, d.date_depot)
                   THEN d.id END)                                 AS closes_hors_delai,
    CAST(COALESCE(SUM(d.montant_frais), 0) AS DECIMAL(12,2))      AS montant_frais_total
FROM referentiel.types_demande AS t
JOIN referentiel.services AS s ON s.id = t.service_id
LEFT JOIN metier.demandes AS d ON d.type_code = t.code
GROUP BY t.code, t.libelle, t.categorie, s.code, t.delai_traitement_jours;
GO

-- ---------------------------------------------------------------------------
-- Demandes par arrondissement (les 16 arrondissements, 0 si aucune demande)
-- ---------------------------------------------------------------------------
CREATE VIEW reporting.demandes_par_arrondissement AS
SELECT
    a.numero                                                      AS arrondissement,
    a.code_postal,
    a.nom,
    a.secteur,
    a.population,
    COUNT_BIG(d.id)                                               AS total,
    COUNT_BIG(CASE WHEN d.date_cloture IS NULL     THEN d.id END) AS ouvertes,
    COUNT_BIG(CASE WHEN d.date_cloture IS NOT NULL THEN d.id END) AS closes,
    CASE WHEN a.population > 0
         THEN CAST(ROUND(COUNT_BIG(d.id) * 10000.0 / a.population, 2) AS DECIMAL(12,2))
    END                                                           AS pour_10000_habitants
FROM referentiel.arrondissements AS a
LEFT JOIN metier.demandes AS d ON d.arrondissement = a.numero
GROUP BY a.numero, a.code_postal, a.nom, a.secteur, a.population;
GO

-- ---------------------------------------------------------------------------
-- Rendez-vous à venir
-- ---------------------------------------------------------------------------
CREATE VIEW reporting.rendez_vous_a_venir AS
SELECT
    r.id                                                          AS rendez_vous_id,
    r.debut,
    DATEADD(MINUTE, r.duree_minutes, r.debut)                     AS fin,
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
FROM metier.rendez_vous AS r
JOIN metier.citoyens AS c ON c.id = r.citoyen_id
JOIN referentiel.services AS s ON s.id = r.service_id
LEFT JOIN metier.demandes AS d ON d.id = r.demande_id
WHERE r.debut >= SYSDATETIMEOFFSET()
  AND r.statut IN (N'planifie', N'confirme');
GO

-- ---------------------------------------------------------------------------
-- Descriptions (équivalent de COMMENT ON : propriétés étendues MS_Description)
-- ---------------------------------------------------------------------------
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Vues de pilotage et de suivi d''activité, en lecture seule, sur les schémas referentiel et metier.',
    @level0type = N'SCHEMA', @level0name = N'reporting';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Nombre de demandes par service et par statut ; délai moyen de traitement (jours) des demandes closes.',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'demandes_par_service';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Nombre total de demandes instruites par le service.',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'demandes_par_service',
    @level2type = N'COLUMN', @level2name = N'total';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Délai moyen dépôt -> clôture en jours, sur les demandes closes (NULL si aucune).',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'demandes_par_service',
    @level2type = N'COLUMN', @level2name = N'delai_moyen_jours';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Nombre de demandes par type, délai moyen constaté, demandes closes au-delà du délai cible, frais perçus.',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'demandes_par_type';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Demandes non closes (deposee, en_cours, en_attente).',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'demandes_par_type',
    @level2type = N'COLUMN', @level2name = N'ouvertes';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Demandes closes après dépôt + delai_traitement_jours.',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'demandes_par_type',
    @level2type = N'COLUMN', @level2name = N'closes_hors_delai';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Nombre de demandes par arrondissement ; les 16 arrondissements apparaissent toujours (0 si aucune demande).',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'demandes_par_arrondissement';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Nombre de demandes rapporté à la population (pour 10 000 habitants).',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'demandes_par_arrondissement',
    @level2type = N'COLUMN', @level2name = N'pour_10000_habitants';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Rendez-vous planifiés ou confirmés dont le début est postérieur ou égal à maintenant, par ordre chronologique.',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'rendez_vous_a_venir';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Fin du créneau (debut + duree_minutes).',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'rendez_vous_a_venir',
    @level2type = N'COLUMN', @level2name = N'fin';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Référence de la demande liée, NULL si aucune.',
    @level0type = N'SCHEMA', @level0name = N'reporting',
    @level1type = N'VIEW', @level1name = N'rendez_vous_a_venir',
    @level2type = N'COLUMN', @level2name = N'demande_reference';
GO
