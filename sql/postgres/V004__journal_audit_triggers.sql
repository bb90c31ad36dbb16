-- V004 : alimentation de metier.journal_audit par triggers.
-- Crée :
--   * la fonction trigger metier.journaliser() ;
--   * sur metier.demandes et metier.rendez_vous, trois triggers AFTER ... FOR EACH STATEMENT
--     (INSERT, UPDATE, DELETE) avec tables de transition.
-- Un trigger par instruction avec tables de transition coûte un seul INSERT ... SELECT par
-- instruction, y compris pour un COPY de masse, là où un trigger par ligne exécuterait la
-- fonction pour chaque ligne. PostgreSQL n'autorise les tables de transition que sur un
-- trigger à événement unique, d'où trois triggers par table.
-- metier.citoyens n'est volontairement pas audité (chargements de masse du banc d'essai).
-- Les TRUNCATE ne sont pas journalisés. Les tables auditées doivent avoir une colonne « id ».

CREATE FUNCTION metier.journaliser()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fonction$
DECLARE
    cible text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO metier.journal_audit (action, table_cible, cle, details)
        SELECT 'INSERT', cible, n.ligne ->> 'id', n.ligne
        FROM (SELECT to_jsonb(nouvelles) AS ligne FROM nouvelles) AS n;

    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO metier.journal_audit (action, table_cible, cle, details)
        SELECT 'DELETE', cible, a.ligne ->> 'id', a.ligne
        FROM (SELECT to_jsonb(anciennes) AS ligne FROM anciennes) AS a;

    ELSIF TG_OP = 'UPDATE' THEN
        -- Seules les colonnes modifiées sont conservées : {"avant": {...}, "apres": {...}} ;
        -- une ligne réécrite à l'identique n'est pas journalisée.
        -- Les lignes avant/après sont appariées sur « id » (clé non modifiée en pratique).
        INSERT INTO metier.journal_audit (action, table_cible, cle, details)
        SELECT 'UPDATE', cible, n.ligne ->> 'id',
               jsonb_build_object(
                   'avant', diff.avant,
                   'apres', diff.apres)
        FROM (SELECT to_jsonb(nouvelles) AS ligne FROM nouvelles) AS n
        JOIN (SELECT to_jsonb(anciennes) AS ligne FROM anciennes) AS a
          ON a.ligne -> 'id' = n.ligne -> 'id'
        CROSS JOIN LATERAL (
            SELECT jsonb_object_agg(col.key, col.value)             AS avant,
                   jsonb_object_agg(col.key, n.ligne -> col.key)    AS apres
            FROM jsonb_each(a.ligne) AS col
            WHERE col.value IS DISTINCT FROM n.ligne -> col.key
        ) AS diff
        WHERE diff.avant IS NOT NULL;
    END IF;

    RETURN NULL;
END;
$fonction$;

COMMENT ON FUNCTION metier.journaliser() IS
    'Trigger AFTER ... FOR EACH STATEMENT : recopie dans metier.journal_audit les lignes des tables de transition '
    '« nouvelles » / « anciennes » (ligne complète pour INSERT/DELETE, colonnes modifiées pour UPDATE, '
    'les mises à jour sans changement étant ignorées).';

CREATE TRIGGER journaliser_insert
    AFTER INSERT ON metier.demandes
    REFERENCING NEW TABLE AS nouvelles
    FOR EACH STATEMENT EXECUTE FUNCTION metier.journaliser();

CREATE TRIGGER journaliser_update
    AFTER UPDATE ON metier.demandes
    REFERENCING OLD TABLE AS anciennes NEW TABLE AS nouvelles
    FOR EACH STATEMENT EXECUTE FUNCTION metier.journaliser();

CREATE TRIGGER journaliser_delete
    AFTER DELETE ON metier.demandes
    REFERENCING OLD TABLE AS anciennes
    FOR EACH STATEMENT EXECUTE FUNCTION metier.journaliser();

CREATE TRIGGER journaliser_insert
    AFTER INSERT ON metier.rendez_vous
    REFERENCING NEW TABLE AS nouvelles
    FOR EACH STATEMENT EXECUTE FUNCTION metier.journaliser();

CREATE TRIGGER journaliser_update
    AFTER UPDATE ON metier.rendez_vous
    REFERENCING OLD TABLE AS anciennes NEW TABLE AS nouvelles
    FOR EACH STATEMENT EXECUTE FUNCTION metier.journaliser();

CREATE TRIGGER journaliser_delete
    AFTER DELETE ON metier.rendez_vous
    REFERENCING OLD TABLE AS anciennes
    FOR EACH STATEMENT EXECUTE FUNCTION metier.journaliser();
