-- V004 : alimentation de metier_journal_audit par triggers, version MySQL 8 / MariaDB 10.11.
-- Crée, sur metier_demandes et metier_rendez_vous, trois triggers AFTER ... FOR EACH ROW
-- (INSERT, UPDATE, DELETE), nommés <table>_journaliser_<insert|update|delete>.
-- MySQL n'a ni trigger par instruction ni table de transition : le journal est écrit ligne
-- par ligne, un INSERT par ligne touchée (y compris pendant un LOAD DATA de masse, qui
-- déclenche les triggers). Les noms de trigger sont uniques dans la base, d'où le nom de la
-- table en préfixe.
-- Contenu de chaque ligne du journal, comme sous PostgreSQL :
--   * INSERT et DELETE : la ligne complète en objet JSON
--   * UPDATE : seules les colonnes modifiées, {"avant": {...}, "apres": {...}} ; une ligne
--     réécrite à l'identique n'est pas journalisée. Les textes sont comparés octet à octet
--     (un changement de casse ou d'espaces en fin de chaîne compte comme une modification).
--   * les horodatages sont écrits en ISO 8601 UTC (2026-11-20T09:30:00.000000Z)
--   * table_cible porte le nom logique (metier.demandes, metier.rendez_vous), identique sur
--     les trois moteurs, et cle l'id de la ligne en texte.
-- utilisateur : un trigger s'exécute avec les droits de son DEFINER, et CURRENT_USER() y
-- désigne ce compte (celui qui a passé la migration), pas l'auteur de la modification.
-- USER() donne le compte de la session qui modifie (utilisateur@hôte du client).
-- metier_citoyens n'est volontairement pas audité (chargements de masse du banc d'essai).
-- Les TRUNCATE ne déclenchent pas de trigger et ne sont pas journalisés.
-- Droits : avec le journal binaire actif (défaut de MySQL 8) et log_bin_trust_function_creators
-- à OFF, créer un trigger demande le privilège SUPER.
-- Les ordres DROP TRIGGER IF EXISTS rendent le fichier rejouable (voir l'en-tête de V001).

DROP TRIGGER IF EXISTS metier_demandes_journaliser_insert;
DROP TRIGGER IF EXISTS metier_demandes_journaliser_update;
DROP TRIGGER IF EXISTS metier_demandes_journaliser_delete;
DROP TRIGGER IF EXISTS metier_rendez_vous_journaliser_insert;
DROP TRIGGER IF EXISTS metier_rendez_vous_journaliser_update;
DROP TRIGGER IF EXISTS metier_rendez_vous_journaliser_delete;

DELIMITER $$

CREATE TRIGGER metier_demandes_journaliser_insert
AFTER INSERT ON metier_demandes
FOR EACH ROW
BEGIN
    INSERT INTO metier_journal_audit (horodatage, utilisateur, action, table_cible, cle, details)
    VALUES (UTC_TIMESTAMP(6), USER(), 'INSERT', 'metier.demandes', CAST(NEW.id AS CHAR),
        JSON_OBJECT(
            'id',              NEW.id,
            'reference',       NEW.reference,
            'citoyen_id',      NEW.citoyen_id,
            'type_code',       NEW.type_code,
            'service_id',      NEW.service_id,
            'arrondissement',  NEW.arrondissement,
            'statut',          NEW.statut,
            'date_depot',      DATE_FORMAT(NEW.date_depot, '%Y-%m-%dT%H:%i:%s.%fZ'),
            'date_cloture',    DATE_FORMAT(NEW.date_cloture, '%Y-%m-%dT%H:%i:%s.%fZ'),
            'montant_frais',   NEW.montant_frais,
            'commentaire',     NEW.commentaire));
END$$

CREATE TRIGGER metier_demandes_journaliser_update
AFTER UPDATE ON metier_demandes
FOR EACH ROW
BEGIN
    DECLARE avant JSON DEFAULT JSON_OBJECT();
    DECLARE apres JSON DEFAULT JSON_OBJECT();
    IF NOT (OLD.id <=> NEW.id) THEN
        SET avant = JSON_SET(avant, '$.id', OLD.id),
            apres = JSON_SET(apres, '$.id', NEW.id);
    END IF;
    IF NOT (CAST(OLD.reference AS BINARY) <=> CAST(NEW.reference AS BINARY)) THEN
        SET avant = JSON_SET(avant, '$.reference', OLD.reference),
            apres = JSON_SET(apres, '$.reference', NEW.reference);
    END IF;
    IF NOT (OLD.citoyen_id <=> NEW.citoyen_id) THEN
        SET avant = JSON_SET(avant, '$.citoyen_id', OLD.citoyen_id),
            apres = JSON_SET(apres, '$.citoyen_id', NEW.citoyen_id);
    END IF;
    IF NOT (CAST(OLD.type_code AS BINARY) <=> CAST(NEW.type_code AS BINARY)) THEN
        SET avant = JSON_SET(avant, '$.type_code', OLD.type_code),
            apres = JSON_SET(apres, '$.type_code', NEW.type_code);
    END IF;
    IF NOT (OLD.service_id <=> NEW.service_id) THEN
        SET avant = JSON_SET(avant, '$.service_id', OLD.service_id),
            apres = JSON_SET(apres, '$.service_id', NEW.service_id);
    END IF;
    IF NOT (OLD.arrondissement <=> NEW.arrondissement) THEN
        SET avant = JSON_SET(avant, '$.arrondissement', OLD.arrondissement),
            apres = JSON_SET(apres, '$.arrondissement', NEW.arrondissement);
    END IF;
    IF NOT (CAST(OLD.statut AS BINARY) <=> CAST(NEW.statut AS BINARY)) THEN
        SET avant = JSON_SET(avant, '$.statut', OLD.statut),
            apres = JSON_SET(apres, '$.statut', NEW.statut);
    END IF;
    IF NOT (OLD.date_depot <=> NEW.date_depot) THEN
        SET avant = JSON_SET(avant, '$.date_depot', DATE_FORMAT(OLD.date_depot, '%Y-%m-%dT%H:%i:%s.%fZ')),
            apres = JSON_SET(apres, '$.date_depot', DATE_FORMAT(NEW.date_depot, '%Y-%m-%dT%H:%i:%s.%fZ'));
    END IF;
    IF NOT (OLD.date_cloture <=> NEW.date_cloture) THEN
        SET avant = JSON_SET(avant, '$.date_cloture', DATE_FORMAT(OLD.date_cloture, '%Y-%m-%dT%H:%i:%s.%fZ')),
            apres = JSON_SET(apres, '$.date_cloture', DATE_FORMAT(NEW.date_cloture, '%Y-%m-%dT%H:%i:%s.%fZ'));
    END IF;
    IF NOT (OLD.montant_frais <=> NEW.montant_frais) THEN
        SET avant = JSON_SET(avant, '$.montant_frais', OLD.montant_frais),
            apres = JSON_SET(apres, '$.montant_frais', NEW.montant_frais);
    END IF;
    IF NOT (CAST(OLD.commentaire AS BINARY) <=> CAST(NEW.commentaire AS BINARY)) THEN
        SET avant = JSON_SET(avant, '$.commentaire', OLD.commentaire),
            apres = JSON_SET(apres, '$.commentaire', NEW.commentaire);
    END IF;
    -- JSON_EXTRACT(x, '$') : sous MariaDB, une variable JSON est un texte, qui serait
    -- sinon imbriqué comme une chaîne et non comme un objet.
    IF JSON_LENGTH(avant) > 0 THEN
        INSERT INTO metier_journal_audit (horodatage, utilisateur, action, table_cible, cle, details)
        VALUES (UTC_TIMESTAMP(6), USER(), 'UPDATE', 'metier.demandes', CAST(NEW.id AS CHAR),
                JSON_OBJECT('avant', JSON_EXTRACT(avant, '$'), 'apres', JSON_EXTRACT(apres, '$')));
    END IF;
END$$

CREATE TRIGGER metier_demandes_journaliser_delete
AFTER DELETE ON metier_demandes
FOR EACH ROW
BEGIN
    INSERT INTO metier_journal_audit (horodatage, utilisateur, action, table_cible, cle, details)
    VALUES (UTC_TIMESTAMP(6), USER(), 'DELETE', 'metier.demandes', CAST(OLD.id AS CHAR),
        JSON_OBJECT(
            'id',              OLD.id,
            'reference',       OLD.reference,
            'citoyen_id',      OLD.citoyen_id,
            'type_code',       OLD.type_code,
            'service_id',      OLD.service_id,
            'arrondissement',  OLD.arrondissement,
            'statut',          OLD.statut,
            'date_depot',      DATE_FORMAT(OLD.date_depot, '%Y-%m-%dT%H:%i:%s.%fZ'),
            'date_cloture',    DATE_FORMAT(OLD.date_cloture, '%Y-%m-%dT%H:%i:%s.%fZ'),
            'montant_frais',   OLD.montant_frais,
            'commentaire',     OLD.commentaire));
END$$

CREATE TRIGGER metier_rendez_vous_journaliser_insert
AFTER INSERT ON metier_rendez_vous
FOR EACH ROW
BEGIN
    INSERT INTO metier_journal_audit (horodatage, utilisateur, action, table_cible, cle, details)
    VALUES (UTC_TIMESTAMP(6), USER(), 'INSERT', 'metier.rendez_vous', CAST(NEW.id AS CHAR),
        JSON_OBJECT(
            'id',             NEW.id,
            'citoyen_id',     NEW.citoyen_id,
            'service_id',     NEW.service_id,
            'demande_id',     NEW.demande_id,
            'debut',          DATE_FORMAT(NEW.debut, '%Y-%m-%dT%H:%i:%s.%fZ'),
            'duree_minutes',  NEW.duree_minutes,
            'statut',         NEW.statut,
            'lieu',           NEW.lieu));
END$$

CREATE TRIGGER metier_rendez_vous_journaliser_update
AFTER UPDATE ON metier_rendez_vous
FOR EACH ROW
BEGIN
    DECLARE avant JSON DEFAULT JSON_OBJECT();
    DECLARE apres JSON DEFAULT JSON_OBJECT();
    IF NOT (OLD.id <=> NEW.id) THEN
        SET avant = JSON_SET(avant, '$.id', OLD.id),
            apres = JSON_SET(apres, '$.id', NEW.id);
    END IF;
    IF NOT (OLD.citoyen_id <=> NEW.citoyen_id) THEN
        SET avant = JSON_SET(avant, '$.citoyen_id', OLD.citoyen_id),
            apres = JSON_SET(apres, '$.citoyen_id', NEW.citoyen_id);
    END IF;
    IF NOT (OLD.service_id <=> NEW.service_id) THEN
        SET avant = JSON_SET(avant, '$.service_id', OLD.service_id),
            apres = JSON_SET(apres, '$.service_id', NEW.service_id);
    END IF;
    IF NOT (OLD.demande_id <=> NEW.demande_id) THEN
        SET avant = JSON_SET(avant, '$.demande_id', OLD.demande_id),
            apres = JSON_SET(apres, '$.demande_id', NEW.demande_id);
    END IF;
    IF NOT (OLD.debut <=> NEW.debut) THEN
        SET avant = JSON_SET(avant, '$.debut', DATE_FORMAT(OLD.debut, '%Y-%m-%dT%H:%i:%s.%fZ')),
            apres = JSON_SET(apres, '$.debut', DATE_FORMAT(NEW.debut, '%Y-%m-%dT%H:%i:%s.%fZ'));
    END IF;
    IF NOT (OLD.duree_minutes <=> NEW.duree_minutes) THEN
        SET avant = JSON_SET(avant, '$.duree_minutes', OLD.duree_minutes),
            apres = JSON_SET(apres, '$.duree_minutes', NEW.duree_minutes);
    END IF;
    IF NOT (CAST(OLD.statut AS BINARY) <=> CAST(NEW.statut AS BINARY)) THEN
        SET avant = JSON_SET(avant, '$.statut', OLD.statut),
            apres = JSON_SET(apres, '$.statut', NEW.statut);
    END IF;
    IF NOT (CAST(OLD.lieu AS BINARY) <=> CAST(NEW.lieu AS BINARY)) THEN
        SET avant = JSON_SET(avant, '$.lieu', OLD.lieu),
            apres = JSON_SET(apres, '$.lieu', NEW.lieu);
    END IF;
    -- JSON_EXTRACT(x, '$') : sous MariaDB, une variable JSON est un texte, qui serait
    -- sinon imbriqué comme une chaîne et non comme un objet.
    IF JSON_LENGTH(avant) > 0 THEN
        INSERT INTO metier_journal_audit (horodatage, utilisateur, action, table_cible, cle, details)
        VALUES (UTC_TIMESTAMP(6), USER(), 'UPDATE', 'metier.rendez_vous', CAST(NEW.id AS CHAR),
                JSON_OBJECT('avant', JSON_EXTRACT(avant, '$'), 'apres', JSON_EXTRACT(apres, '$')));
    END IF;
END$$

CREATE TRIGGER metier_rendez_vous_journaliser_delete
AFTER DELETE ON metier_rendez_vous
FOR EACH ROW
BEGIN
    INSERT INTO metier_journal_audit (horodatage, utilisateur, action, table_cible, cle, details)
    VALUES (UTC_TIMESTAMP(6), USER(), 'DELETE', 'metier.rendez_vous', CAST(OLD.id AS CHAR),
        JSON_OBJECT(
            'id',             OLD.id,
            'citoyen_id',     OLD.citoyen_id,
            'service_id',     OLD.service_id,
            'demande_id',     OLD.demande_id,
            'debut',          DATE_FORMAT(OLD.debut, '%Y-%m-%dT%H:%i:%s.%fZ'),
            'duree_minutes',  OLD.duree_minutes,
            'statut',         OLD.statut,
            'lieu',           OLD.lieu));
END$$

DELIMITER ;
