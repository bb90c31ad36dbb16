-- V004 : alimentation de metier.journal_audit par triggers, version SQL Server 2019/2022.
-- Crée, sur metier.demandes et metier.rendez_vous, trois triggers AFTER (INSERT, UPDATE,
-- DELETE), nommés <table>_journaliser_<insert|update|delete>.
-- Comme les triggers par instruction de PostgreSQL, un trigger SQL Server s'exécute une fois
-- par instruction et lit les pseudo-tables inserted / deleted (les tables de transition) :
-- un seul INSERT ... SELECT par instruction, y compris pour un chargement de masse.
-- Contenu de chaque ligne du journal, comme sous PostgreSQL :
--   * INSERT et DELETE : la ligne complète en objet JSON (FOR JSON PATH, NULL inclus)
--   * UPDATE : seules les colonnes modifiées, {"avant": {...}, "apres": {...}} ; une ligne
--     réécrite à l'identique n'est pas journalisée
--   * table_cible : metier.demandes ou metier.rendez_vous ; cle : l'id de la ligne en texte
--   * horodatage et utilisateur : valeurs par défaut de la table (SYSDATETIMEOFFSET(),
--     SUSER_SNAME() : la connexion de la session qui modifie, le trigger s'exécutant sous
--     l'identité de l'appelant)
-- metier.citoyens n'est volontairement pas audité (chargements de masse du banc d'essai).
-- Les TRUNCATE ne déclenchent pas de trigger et ne sont pas journalisés. Un chargement en
-- masse (BULK INSERT, bcp, INSERT BULK) ne déclenche les triggers qu'avec l'option
-- FIRE_TRIGGERS, et ne vérifie les contraintes CHECK et les clés étrangères qu'avec
-- CHECK_CONSTRAINTS.
-- OPENJSON demande le niveau de compatibilité 130 ou plus (défaut : 150 pour SQL Server 2019,
-- 160 pour 2022) ; STRING_AGG demande SQL Server 2017 ou plus.

SET ANSI_NULLS ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET QUOTED_IDENTIFIER ON;
SET NUMERIC_ROUNDABORT OFF;
GO

CREATE TRIGGER metier.demandes_journaliser_insert
ON metier.demandes
AFTER INSERT
AS
BEGIN
    SET NOCOUNT ON;
    INSERT INTO metier.journal_audit (action, table_cible, cle, details)
    SELECT N'INSERT', N'metier.demandes', CAST(n.id AS NVARCHAR(20)),
           (
            SELECT n.id              AS id,
                   n.reference       AS reference,
                   n.citoyen_id      AS citoyen_id,
                   n.type_code       AS type_code,
                   n.service_id      AS service_id,
                   n.arrondissement  AS arrondissement,
                   n.statut          AS statut,
                   n.date_depot      AS date_depot,
                   n.date_cloture    AS date_cloture,
                   n.montant_frais   AS montant_frais,
                   n.commentaire     AS commentaire
            FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES
           )
    FROM inserted AS n;
END;
GO

CREATE TRIGGER metier.demandes_journaliser_update
ON metier.demandes
AFTER UPDATE
AS
BEGIN
    SET NOCOUNT ON;
    -- Lignes avant/après appariées sur id (une colonne IDENTITY ne peut pas être modifiée),
    -- mises en JSON complètes, puis réduites aux clés dont la valeur a changé (comparaison
    -- binaire, longueur comprise : casse et espaces finals comptent).
    INSERT INTO metier.journal_audit (action, table_cible, cle, details)
    SELECT N'UPDATE', N'metier.demandes', CAST(n.id AS NVARCHAR(20)),
           N'{"avant":' + diff.avant + N',"apres":' + diff.apres + N'}'
    FROM inserted AS n
    JOIN deleted AS a ON a.id = n.id
    CROSS APPLY (
        SELECT (
            SELECT a.id              AS id,
                   a.reference       AS reference,
                   a.citoyen_id      AS citoyen_id,
                   a.type_code       AS type_code,
                   a.service_id      AS service_id,
                   a.arrondissement  AS arrondissement,
                   a.statut          AS statut,
                   a.date_depot      AS date_depot,
                   a.date_cloture    AS date_cloture,
                   a.montant_frais   AS montant_frais,
                   a.commentaire     AS commentaire
            FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES
               ) AS avant,
               (
            SELECT n.id              AS id,
                   n.reference       AS reference,
                   n.citoyen_id      AS citoyen_id,
                   n.type_code       AS type_code,
                   n.service_id      AS service_id,
                   n.arrondissement  AS arrondissement,
                   n.statut          AS statut,
                   n.date_depot      AS date_depot,
                   n.date_cloture    AS date_cloture,
                   n.montant_frais   AS montant_frais,
                   n.commentaire     AS commentaire
            FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES
               ) AS apres
    ) AS ligne
    CROSS APPLY (
        -- Les deux agrégats suivent le même ordre (av.[key]) : SQL Server refuse deux
        -- STRING_AGG ... WITHIN GROUP d'ordres différents dans une même requête.
        SELECT N'{' + STRING_AGG(CAST(N'"' + av.[key] + N'":'
                                      + CASE av.[type]
                                            WHEN 0 THEN N'null'
                                            WHEN 1 THEN N'"' + STRING_ESCAPE(av.[value], 'json') + N'"'
                                            ELSE av.[value]
                                        END AS NVARCHAR(MAX)), N',')
                         WITHIN GROUP (ORDER BY av.[key]) + N'}' AS avant,
               N'{' + STRING_AGG(CAST(N'"' + ap.[key] + N'":'
                                      + CASE ap.[type]
                                            WHEN 0 THEN N'null'
                                            WHEN 1 THEN N'"' + STRING_ESCAPE(ap.[value], 'json') + N'"'
                                            ELSE ap.[value]
                                        END AS NVARCHAR(MAX)), N',')
                         WITHIN GROUP (ORDER BY av.[key]) + N'}' AS apres
        FROM OPENJSON(ligne.avant) AS av
        JOIN OPENJSON(ligne.apres) AS ap ON ap.[key] = av.[key]
        WHERE av.[type] <> ap.[type]
           OR DATALENGTH(av.[value]) <> DATALENGTH(ap.[value])
           OR av.[value] COLLATE Latin1_General_100_BIN2 <> ap.[value] COLLATE Latin1_General_100_BIN2
    ) AS diff
    WHERE diff.avant IS NOT NULL;
END;
GO

CREATE TRIGGER metier.demandes_journaliser_delete
ON metier.demandes
AFTER DELETE
AS
BEGIN
    SET NOCOUNT ON;
    INSERT INTO metier.journal_audit (action, table_cible, cle, details)
    SELECT N'DELETE', N'metier.demandes', CAST(a.id AS NVARCHAR(20)),
           (
            SELECT a.id              AS id,
                   a.reference       AS reference,
                   a.citoyen_id      AS citoyen_id,
                   a.type_code       AS type_code,
                   a.service_id      AS service_id,
                   a.arrondissement  AS arrondissement,
                   a.statut          AS statut,
                   a.date_depot      AS date_depot,
                   a.date_cloture    AS date_cloture,
                   a.montant_frais   AS montant_frais,
                   a.commentaire     AS commentaire
            FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES
           )
    FROM deleted AS a;
END;
GO

CREATE TRIGGER metier.rendez_vous_journaliser_insert
ON metier.rendez_vous
AFTER INSERT
AS
BEGIN
    SET NOCOUNT ON;
    INSERT INTO metier.journal_audit (action, table_cible, cle, details)
    SELECT N'INSERT', N'metier.rendez_vous', CAST(n.id AS NVARCHAR(20)),
           (
            SELECT n.id             AS id,
                   n.citoyen_id     AS citoyen_id,
                   n.service_id     AS service_id,
                   n.demande_id     AS demande_id,
                   n.debut          AS debut,
                   n.duree_minutes  AS duree_minutes,
                   n.statut         AS statut,
                   n.lieu           AS lieu
            FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES
           )
    FROM inserted AS n;
END;
GO

CREATE TRIGGER metier.rendez_vous_journaliser_update
ON metier.rendez_vous
AFTER UPDATE
AS
BEGIN
    SET NOCOUNT ON;
    -- Lignes avant/après appariées sur id (une colonne IDENTITY ne peut pas être modifiée),
    -- mises en JSON complètes, puis réduites aux clés dont la valeur a changé (comparaison
    -- binaire, longueur comprise : casse et espaces finals comptent).
    INSERT INTO metier.journal_audit (action, table_cible, cle, details)
    SELECT N'UPDATE', N'metier.rendez_vous', CAST(n.id AS NVARCHAR(20)),
           N'{"avant":' + diff.avant + N',"apres":' + diff.apres + N'}'
    FROM inserted AS n
    JOIN deleted AS a ON a.id = n.id
    CROSS APPLY (
        SELECT (
            SELECT a.id             AS id,
                   a.citoyen_id     AS citoyen_id,
                   a.service_id     AS service_id,
                   a.demande_id     AS demande_id,
                   a.debut          AS debut,
                   a.duree_minutes  AS duree_minutes,
                   a.statut         AS statut,
                   a.lieu           AS lieu
            FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES
               ) AS avant,
               (
            SELECT n.id             AS id,
                   n.citoyen_id     AS citoyen_id,
                   n.service_id     AS service_id,
                   n.demande_id     AS demande_id,
                   n.debut          AS debut,
                   n.duree_minutes  AS duree_minutes,
                   n.statut         AS statut,
                   n.lieu           AS lieu
            FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES
               ) AS apres
    ) AS ligne
    CROSS APPLY (
        -- Les deux agrégats suivent le même ordre (av.[key]) : SQL Server refuse deux
        -- STRING_AGG ... WITHIN GROUP d'ordres différents dans une même requête.
        SELECT N'{' + STRING_AGG(CAST(N'"' + av.[key] + N'":'
                                      + CASE av.[type]
                                            WHEN 0 THEN N'null'
                                            WHEN 1 THEN N'"' + STRING_ESCAPE(av.[value], 'json') + N'"'
                                            ELSE av.[value]
                                        END AS NVARCHAR(MAX)), N',')
                         WITHIN GROUP (ORDER BY av.[key]) + N'}' AS avant,
               N'{' + STRING_AGG(CAST(N'"' + ap.[key] + N'":'
                                      + CASE ap.[type]
                                            WHEN 0 THEN N'null'
                                            WHEN 1 THEN N'"' + STRING_ESCAPE(ap.[value], 'json') + N'"'
                                            ELSE ap.[value]
                                        END AS NVARCHAR(MAX)), N',')
                         WITHIN GROUP (ORDER BY av.[key]) + N'}' AS apres
        FROM OPENJSON(ligne.avant) AS av
        JOIN OPENJSON(ligne.apres) AS ap ON ap.[key] = av.[key]
        WHERE av.[type] <> ap.[type]
           OR DATALENGTH(av.[value]) <> DATALENGTH(ap.[value])
           OR av.[value] COLLATE Latin1_General_100_BIN2 <> ap.[value] COLLATE Latin1_General_100_BIN2
    ) AS diff
    WHERE diff.avant IS NOT NULL;
END;
GO

CREATE TRIGGER metier.rendez_vous_journaliser_delete
ON metier.rendez_vous
AFTER DELETE
AS
BEGIN
    SET NOCOUNT ON;
    INSERT INTO metier.journal_audit (action, table_cible, cle, details)
    SELECT N'DELETE', N'metier.rendez_vous', CAST(a.id AS NVARCHAR(20)),
           (
            SELECT a.id             AS id,
                   a.citoyen_id     AS citoyen_id,
                   a.service_id     AS service_id,
                   a.demande_id     AS demande_id,
                   a.debut          AS debut,
                   a.duree_minutes  AS duree_minutes,
                   a.statut         AS statut,
                   a.lieu           AS lieu
            FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES
           )
    FROM deleted AS a;
END;
GO
