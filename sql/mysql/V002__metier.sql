-- V002 : « metier » (données de gestion de la base mairie), version MySQL 8 / MariaDB 10.11.
-- Crée :
--   * metier_citoyens : usagers inscrits (chargés en masse, donc sans trigger)
--   * metier_demandes : demandes déposées par les usagers et leur cycle de vie
--   * metier_rendez_vous : rendez-vous pris auprès des services
--   * metier_journal_audit : journal des modifications (alimenté par les triggers de V004)
--   * les index sur toutes les clés étrangères et les colonnes filtrées par les vues de reporting
-- Dépend de V001 (referentiel). Conventions de traduction depuis PostgreSQL : voir l'en-tête
-- de V001 (préfixe de schéma, DATETIME(6) en UTC, AUTO_INCREMENT, collations utf8mb4_bin).

-- ---------------------------------------------------------------------------
-- Citoyens
-- L'ordre et la liste des colonnes sont figés : le générateur de données du banc
-- d'essai en dépend. Pas de trigger sur cette table (chargement de 1M de lignes).
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS metier_citoyens (
    id                 BIGINT         NOT NULL AUTO_INCREMENT
                       COMMENT 'Identifiant interne (AUTO_INCREMENT, valeur explicite acceptée au chargement).',
    civilite           VARCHAR(32)    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
                       COMMENT 'Civilité : M ou Mme.',
    nom                VARCHAR(255)   NOT NULL
                       COMMENT 'Nom de famille (nom d''usage).',
    prenom             VARCHAR(255)   NOT NULL
                       COMMENT 'Prénom usuel.',
    date_naissance     DATE           NOT NULL
                       COMMENT 'Date de naissance.',
    email              VARCHAR(254)   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL
                       COMMENT 'Adresse électronique, unique si renseignée (NULL autorisé, plusieurs fois).',
    telephone          VARCHAR(64)    NULL
                       COMMENT 'Téléphone de contact, format libre.',
    adresse            TEXT           NOT NULL
                       COMMENT 'Adresse postale (numéro, voie, complément), sans code postal ni ville.',
    code_postal        CHAR(5)        NOT NULL
                       COMMENT 'Code postal marseillais (13001 à 13016).',
    arrondissement     SMALLINT       NOT NULL
                       COMMENT 'Arrondissement de résidence.',
    quotient_familial  DECIMAL(10,2)  NULL
                       COMMENT 'Quotient familial CAF en euros, pour les tarifs sociaux (cantine, crèche).',
    date_inscription   DATETIME(6)    NOT NULL DEFAULT (UTC_TIMESTAMP(6))
                       COMMENT 'Date de création du compte usager (UTC).',
    PRIMARY KEY (id),
    UNIQUE KEY citoyens_email_key (email),
    KEY citoyens_arrondissement_idx (arrondissement),
    CONSTRAINT citoyens_arrondissement_fkey
        FOREIGN KEY (arrondissement) REFERENCES referentiel_arrondissements (numero),
    CONSTRAINT citoyens_civilite_check          CHECK (civilite IN ('M', 'Mme')),
    CONSTRAINT citoyens_quotient_familial_check CHECK (quotient_familial >= 0),
    CONSTRAINT citoyens_code_postal_check       CHECK (code_postal REGEXP '^130(0[1-9]|1[0-6])$')
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='Usagers inscrits auprès des services municipaux.';

-- ---------------------------------------------------------------------------
-- Demandes
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS metier_demandes (
    id              BIGINT         NOT NULL AUTO_INCREMENT
                    COMMENT 'Identifiant interne (AUTO_INCREMENT, valeur explicite acceptée au chargement).',
    reference       VARCHAR(32)    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
                    COMMENT 'Référence communiquée à l''usager, unique (ex. DEM-2026-000123).',
    citoyen_id      BIGINT         NOT NULL
                    COMMENT 'Usager demandeur.',
    type_code       VARCHAR(64)    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
                    COMMENT 'Type de demande (referentiel_types_demande).',
    service_id      INT            NOT NULL
                    COMMENT 'Service qui instruit la demande.',
    arrondissement  SMALLINT       NOT NULL
                    COMMENT 'Arrondissement concerné par la demande (lieu du signalement ou du domicile).',
    statut          VARCHAR(32)    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
                    COMMENT 'Cycle de vie : deposee, en_cours, en_attente (pièces manquantes), puis acceptee, refusee ou cloturee (états finaux).',
    date_depot      DATETIME(6)    NOT NULL
                    COMMENT 'Horodatage du dépôt (UTC).',
    date_cloture    DATETIME(6)    NULL
                    COMMENT 'Horodatage de la décision ou de la clôture (UTC) ; renseigné si et seulement si le statut est final.',
    montant_frais   DECIMAL(10,2)  NOT NULL DEFAULT 0
                    COMMENT 'Frais ou redevance dus par l''usager, en euros (0 pour les démarches gratuites).',
    commentaire     TEXT           NULL
                    COMMENT 'Commentaire libre de l''usager ou de l''agent instructeur.',
    PRIMARY KEY (id),
    UNIQUE KEY demandes_reference_key (reference),
    KEY demandes_citoyen_id_idx     (citoyen_id),
    KEY demandes_type_code_idx      (type_code),
    KEY demandes_service_id_idx     (service_id),
    KEY demandes_arrondissement_idx (arrondissement),
    KEY demandes_statut_idx         (statut),
    KEY demandes_date_depot_idx     (date_depot),
    CONSTRAINT demandes_citoyen_id_fkey
        FOREIGN KEY (citoyen_id) REFERENCES metier_citoyens (id),
    CONSTRAINT demandes_type_code_fkey
        FOREIGN KEY (type_code) REFERENCES referentiel_types_demande (code),
    CONSTRAINT demandes_service_id_fkey
        FOREIGN KEY (service_id) REFERENCES referentiel_services (id),
    CONSTRAINT demandes_arrondissement_fkey
        FOREIGN KEY (arrondissement) REFERENCES referentiel_arrondissements (numero),
    CONSTRAINT demandes_statut_check
        CHECK (statut IN ('deposee', 'en_cours', 'en_attente',
                          'acceptee', 'refusee', 'cloturee')),
    CONSTRAINT demandes_montant_frais_check
        CHECK (montant_frais >= 0),
    CONSTRAINT demandes_dates_check
        CHECK (date_cloture IS NULL OR date_cloture >= date_depot),
    -- Une demande a une date de clôture si et seulement si elle est dans un état final.
    CONSTRAINT demandes_cloture_statut_check
        CHECK ((statut IN ('acceptee', 'refusee', 'cloturee')) = (date_cloture IS NOT NULL))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='Demandes déposées par les usagers (actes, autorisations, signalements...).';

-- ---------------------------------------------------------------------------
-- Rendez-vous
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS metier_rendez_vous (
    id             BIGINT        NOT NULL AUTO_INCREMENT
                   COMMENT 'Identifiant interne (AUTO_INCREMENT, valeur explicite acceptée au chargement).',
    citoyen_id     BIGINT        NOT NULL
                   COMMENT 'Usager reçu.',
    service_id     INT           NOT NULL
                   COMMENT 'Service qui reçoit.',
    demande_id     BIGINT        NULL
                   COMMENT 'Demande liée, le cas échéant (NULL pour un simple renseignement).',
    debut          DATETIME(6)   NOT NULL
                   COMMENT 'Début du créneau (UTC).',
    duree_minutes  INT           NOT NULL
                   COMMENT 'Durée du créneau en minutes (5 à 240).',
    statut         VARCHAR(32)   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
                   COMMENT 'planifie, confirme (à venir), honore, annule, absent (usager non venu).',
    lieu           VARCHAR(255)  NOT NULL
                   COMMENT 'Lieu d''accueil (mairie de secteur, hôtel de ville, bureau municipal de proximité...).',
    PRIMARY KEY (id),
    KEY rendez_vous_citoyen_id_idx (citoyen_id),
    KEY rendez_vous_service_id_idx (service_id),
    KEY rendez_vous_demande_id_idx (demande_id),
    KEY rendez_vous_debut_idx      (debut),
    KEY rendez_vous_statut_idx     (statut),
    CONSTRAINT rendez_vous_citoyen_id_fkey
        FOREIGN KEY (citoyen_id) REFERENCES metier_citoyens (id),
    CONSTRAINT rendez_vous_service_id_fkey
        FOREIGN KEY (service_id) REFERENCES referentiel_services (id),
    CONSTRAINT rendez_vous_demande_id_fkey
        FOREIGN KEY (demande_id) REFERENCES metier_demandes (id),
    CONSTRAINT rendez_vous_duree_minutes_check
        CHECK (duree_minutes BETWEEN 5 AND 240),
    CONSTRAINT rendez_vous_statut_check
        CHECK (statut IN ('planifie', 'confirme', 'honore', 'annule', 'absent'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='Rendez-vous des usagers auprès des services municipaux.';

-- ---------------------------------------------------------------------------
-- Journal d'audit
-- Sous PostgreSQL, id est GENERATED ALWAYS et utilisateur vaut current_user par défaut.
-- MySQL ne sait ni refuser une valeur explicite pour un AUTO_INCREMENT, ni prendre
-- l'utilisateur de la session comme valeur par défaut : utilisateur n'a pas de défaut et
-- les triggers de V004, seuls auteurs des lignes, renseignent horodatage et utilisateur.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS metier_journal_audit (
    id           BIGINT        NOT NULL AUTO_INCREMENT
                 COMMENT 'Numéro d''ordre, attribué par la base (AUTO_INCREMENT).',
    horodatage   DATETIME(6)   NOT NULL DEFAULT (UTC_TIMESTAMP(6))
                 COMMENT 'Horodatage (UTC) de l''instruction qui a fait la modification.',
    utilisateur  VARCHAR(384)  NOT NULL
                 COMMENT 'Compte de la session au moment de la modification, tel que USER() le donne (utilisateur@hôte).',
    action       VARCHAR(32)   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
                 COMMENT 'INSERT, UPDATE ou DELETE.',
    table_cible  VARCHAR(128)  NOT NULL
                 COMMENT 'Table modifiée, sous son nom logique schéma.table comme sous PostgreSQL (ex. metier.demandes pour metier_demandes).',
    cle          VARCHAR(255)  NULL
                 COMMENT 'Clé primaire de la ligne modifiée, en texte.',
    details      JSON          NULL
                 COMMENT 'Contenu de la ligne (INSERT, DELETE) ou colonnes modifiées avec valeurs avant/après (UPDATE).',
    PRIMARY KEY (id),
    KEY journal_audit_horodatage_idx (horodatage),
    CONSTRAINT journal_audit_action_check CHECK (action IN ('INSERT', 'UPDATE', 'DELETE'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
  COMMENT='Journal des insertions, modifications et suppressions sur les tables métier auditées.';
