-- V002 : schéma « metier » (données de gestion de la base mairie), version SQL Server 2019/2022.
-- Crée :
--   * le schéma metier
--   * metier.citoyens : usagers inscrits (chargés en masse, donc sans trigger)
--   * metier.demandes : demandes déposées par les usagers et leur cycle de vie
--   * metier.rendez_vous : rendez-vous pris auprès des services
--   * metier.journal_audit : journal des modifications (alimenté par les triggers de V004)
--   * les index sur toutes les clés étrangères et les colonnes filtrées par les vues de reporting
-- Dépend de V001 (referentiel). Conventions de traduction depuis PostgreSQL : voir l'en-tête
-- de V001.
-- Identités : une valeur explicite d'id demande SET IDENTITY_INSERT <table> ON (ou l'option
-- KEEP_IDENTITY d'un chargement en masse) ; SQL Server place ensuite de lui-même le compteur
-- au-delà du plus grand id inséré. journal_audit.id (GENERATED ALWAYS sous PostgreSQL) est
-- une identité à laquelle seuls les triggers de V004 écrivent.

SET ANSI_NULLS ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET QUOTED_IDENTIFIER ON;
SET NUMERIC_ROUNDABORT OFF;
GO

CREATE SCHEMA metier;
GO

-- ---------------------------------------------------------------------------
-- Citoyens
-- L'ordre et la liste des colonnes sont figés : le générateur de données du banc
-- d'essai en dépend. Pas de trigger sur cette table (chargement de 1M de lignes).
-- ---------------------------------------------------------------------------
CREATE TABLE metier.citoyens (
    id                 BIGINT          IDENTITY(1,1) NOT NULL,
    civilite           NVARCHAR(32)    COLLATE Latin1_General_100_BIN2 NOT NULL,
    nom                NVARCHAR(255)   NOT NULL,
    prenom             NVARCHAR(255)   NOT NULL,
    date_naissance     DATE            NOT NULL,
    email              NVARCHAR(254)   COLLATE Latin1_General_100_BIN2 NULL,
    telephone          NVARCHAR(64)    NULL,
    adresse            NVARCHAR(MAX)   NOT NULL,
    code_postal        CHAR(5)         NOT NULL,
    arrondissement     SMALLINT        NOT NULL,
    quotient_familial  DECIMAL(10,2)   NULL,
    date_inscription   DATETIMEOFFSET(3) NOT NULL
                       CONSTRAINT citoyens_date_inscription_default DEFAULT SYSDATETIMEOFFSET(),
    CONSTRAINT citoyens_pkey PRIMARY KEY (id),
    CONSTRAINT citoyens_arrondissement_fkey
        FOREIGN KEY (arrondissement) REFERENCES referentiel.arrondissements (numero),
    CONSTRAINT citoyens_civilite_check CHECK (civilite IN (N'M', N'Mme')),
    CONSTRAINT citoyens_quotient_familial_check CHECK (quotient_familial >= 0),
    CONSTRAINT citoyens_code_postal_check
        CHECK (code_postal LIKE '130[0-1][0-9]' AND code_postal BETWEEN '13001' AND '13016')
);

-- UNIQUE (email) de PostgreSQL : index unique filtré, car une contrainte UNIQUE de
-- SQL Server n'admettrait qu'un seul citoyen sans adresse électronique.
CREATE UNIQUE INDEX citoyens_email_key ON metier.citoyens (email) WHERE email IS NOT NULL;
CREATE INDEX citoyens_arrondissement_idx ON metier.citoyens (arrondissement);

-- ---------------------------------------------------------------------------
-- Demandes
-- ---------------------------------------------------------------------------
CREATE TABLE metier.demandes (
    id              BIGINT          IDENTITY(1,1) NOT NULL,
    reference       NVARCHAR(32)    COLLATE Latin1_General_100_BIN2 NOT NULL,
    citoyen_id      BIGINT          NOT NULL,
    type_code       NVARCHAR(64)    COLLATE Latin1_General_100_BIN2 NOT NULL,
    service_id      INT             NOT NULL,
    arrondissement  SMALLINT        NOT NULL,
    statut          NVARCHAR(32)    COLLATE Latin1_General_100_BIN2 NOT NULL,
    date_depot      DATETIMEOFFSET(3) NOT NULL,
    date_cloture    DATETIMEOFFSET(3) NULL,
    montant_frais   DECIMAL(10,2)   NOT NULL CONSTRAINT demandes_montant_frais_default DEFAULT 0,
    commentaire     NVARCHAR(MAX)   NULL,
    CONSTRAINT demandes_pkey PRIMARY KEY (id),
    CONSTRAINT demandes_reference_key UNIQUE (reference),
    CONSTRAINT demandes_citoyen_id_fkey
        FOREIGN KEY (citoyen_id) REFERENCES metier.citoyens (id),
    CONSTRAINT demandes_type_code_fkey
        FOREIGN KEY (type_code) REFERENCES referentiel.types_demande (code),
    CONSTRAINT demandes_service_id_fkey
        FOREIGN KEY (service_id) REFERENCES referentiel.services (id),
    CONSTRAINT demandes_arrondissement_fkey
        FOREIGN KEY (arrondissement) REFERENCES referentiel.arrondissements (numero),
    CONSTRAINT demandes_statut_check
        CHECK (statut IN (N'deposee', N'en_cours', N'en_attente',
                          N'acceptee', N'refusee', N'cloturee')),
    CONSTRAINT demandes_montant_frais_check
        CHECK (montant_frais >= 0),
    CONSTRAINT demandes_dates_check
        CHECK (date_cloture IS NULL OR date_cloture >= date_depot),
    -- Une demande a une date de clôture si et seulement si elle est dans un état final
    -- (T-SQL ne compare pas deux conditions entre elles : les deux cas sont écrits).
    CONSTRAINT demandes_cloture_statut_check
        CHECK ((statut IN (N'acceptee', N'refusee', N'cloturee') AND date_cloture IS NOT NULL)
            OR (statut NOT IN (N'acceptee', N'refusee', N'cloturee') AND date_cloture IS NULL))
);

CREATE INDEX demandes_citoyen_id_idx     ON metier.demandes (citoyen_id);
CREATE INDEX demandes_type_code_idx      ON metier.demandes (type_code);
CREATE INDEX demandes_service_id_idx     ON metier.demandes (service_id);
CREATE INDEX demandes_arrondissement_idx ON metier.demandes (arrondissement);
CREATE INDEX demandes_statut_idx         ON metier.demandes (statut);
CREATE INDEX demandes_date_depot_idx     ON metier.demandes (date_depot);

-- ---------------------------------------------------------------------------
-- Rendez-vous
-- ---------------------------------------------------------------------------
CREATE TABLE metier.rendez_vous (
    id             BIGINT          IDENTITY(1,1) NOT NULL,
    citoyen_id     BIGINT          NOT NULL,
    service_id     INT             NOT NULL,
    demande_id     BIGINT          NULL,
    debut          DATETIMEOFFSET(3) NOT NULL,
    duree_minutes  INT             NOT NULL,
    statut         NVARCHAR(32)    COLLATE Latin1_General_100_BIN2 NOT NULL,
    lieu           NVARCHAR(255)   NOT NULL,
    CONSTRAINT rendez_vous_pkey PRIMARY KEY (id),
    CONSTRAINT rendez_vous_citoyen_id_fkey
        FOREIGN KEY (citoyen_id) REFERENCES metier.citoyens (id),
    CONSTRAINT rendez_vous_service_id_fkey
        FOREIGN KEY (service_id) REFERENCES referentiel.services (id),
    CONSTRAINT rendez_vous_demande_id_fkey
        FOREIGN KEY (demande_id) REFERENCES metier.demandes (id),
    CONSTRAINT rendez_vous_duree_minutes_check
        CHECK (duree_minutes BETWEEN 5 AND 240),
    CONSTRAINT rendez_vous_statut_check
        CHECK (statut IN (N'planifie', N'confirme', N'honore', N'annule', N'absent'))
);

CREATE INDEX rendez_vous_citoyen_id_idx ON metier.rendez_vous (citoyen_id);
CREATE INDEX rendez_vous_service_id_idx ON metier.rendez_vous (service_id);
CREATE INDEX rendez_vous_demande_id_idx ON metier.rendez_vous (demande_id);
CREATE INDEX rendez_vous_debut_idx      ON metier.rendez_vous (debut);
CREATE INDEX rendez_vous_statut_idx     ON metier.rendez_vous (statut);

-- ---------------------------------------------------------------------------
-- Journal d'audit
-- ---------------------------------------------------------------------------
CREATE TABLE metier.journal_audit (
    id           BIGINT          IDENTITY(1,1) NOT NULL,
    horodatage   DATETIMEOFFSET(3) NOT NULL
                 CONSTRAINT journal_audit_horodatage_default DEFAULT SYSDATETIMEOFFSET(),
    utilisateur  NVARCHAR(128)   NOT NULL
                 CONSTRAINT journal_audit_utilisateur_default DEFAULT SUSER_SNAME(),
    action       NVARCHAR(32)    COLLATE Latin1_General_100_BIN2 NOT NULL,
    table_cible  NVARCHAR(256)   NOT NULL,
    cle          NVARCHAR(255)   NULL,
    details      NVARCHAR(MAX)   NULL,
    CONSTRAINT journal_audit_pkey PRIMARY KEY (id),
    CONSTRAINT journal_audit_action_check CHECK (action IN (N'INSERT', N'UPDATE', N'DELETE')),
    CONSTRAINT journal_audit_details_check CHECK (ISJSON(details) = 1)
);

CREATE INDEX journal_audit_horodatage_idx ON metier.journal_audit (horodatage);
GO

-- ---------------------------------------------------------------------------
-- Descriptions (équivalent de COMMENT ON : propriétés étendues MS_Description)
-- ---------------------------------------------------------------------------
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Données de gestion : citoyens, demandes, rendez-vous et journal d''audit.',
    @level0type = N'SCHEMA', @level0name = N'metier';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Usagers inscrits auprès des services municipaux.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Identifiant interne (IDENTITY, valeur explicite acceptée au chargement avec SET IDENTITY_INSERT).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Civilité : M ou Mme.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'civilite';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Nom de famille (nom d''usage).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'nom';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Prénom usuel.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'prenom';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Date de naissance.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'date_naissance';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Adresse électronique, unique si renseignée (NULL autorisé, plusieurs fois).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'email';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Téléphone de contact, format libre.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'telephone';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Adresse postale (numéro, voie, complément), sans code postal ni ville.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'adresse';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Code postal marseillais (13001 à 13016).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'code_postal';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Arrondissement de résidence.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'arrondissement';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Quotient familial CAF en euros, pour les tarifs sociaux (cantine, crèche).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'quotient_familial';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Date de création du compte usager.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'citoyens',
    @level2type = N'COLUMN', @level2name = N'date_inscription';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Demandes déposées par les usagers (actes, autorisations, signalements...).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Identifiant interne (IDENTITY, valeur explicite acceptée au chargement avec SET IDENTITY_INSERT).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Référence communiquée à l''usager, unique (ex. DEM-2026-000123).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'reference';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Usager demandeur.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'citoyen_id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Type de demande (referentiel.types_demande).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'type_code';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Service qui instruit la demande.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'service_id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Arrondissement concerné par la demande (lieu du signalement ou du domicile).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'arrondissement';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Cycle de vie : deposee, en_cours, en_attente (pièces manquantes), puis acceptee, refusee ou cloturee (états finaux).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'statut';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Horodatage du dépôt.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'date_depot';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Horodatage de la décision ou de la clôture ; renseigné si et seulement si le statut est final.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'date_cloture';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Frais ou redevance dus par l''usager, en euros (0 pour les démarches gratuites).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'montant_frais';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Commentaire libre de l''usager ou de l''agent instructeur.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'demandes',
    @level2type = N'COLUMN', @level2name = N'commentaire';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Rendez-vous des usagers auprès des services municipaux.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'rendez_vous';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Identifiant interne (IDENTITY, valeur explicite acceptée au chargement avec SET IDENTITY_INSERT).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'rendez_vous',
    @level2type = N'COLUMN', @level2name = N'id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Usager reçu.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'rendez_vous',
    @level2type = N'COLUMN', @level2name = N'citoyen_id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Service qui reçoit.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'rendez_vous',
    @level2type = N'COLUMN', @level2name = N'service_id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Demande liée, le cas échéant (NULL pour un simple renseignement).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'rendez_vous',
    @level2type = N'COLUMN', @level2name = N'demande_id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Début du créneau.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'rendez_vous',
    @level2type = N'COLUMN', @level2name = N'debut';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Durée du créneau en minutes (5 à 240).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'rendez_vous',
    @level2type = N'COLUMN', @level2name = N'duree_minutes';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'planifie, confirme (à venir), honore, annule, absent (usager non venu).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'rendez_vous',
    @level2type = N'COLUMN', @level2name = N'statut';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Lieu d''accueil (mairie de secteur, hôtel de ville, bureau municipal de proximité...).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'rendez_vous',
    @level2type = N'COLUMN', @level2name = N'lieu';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Journal des insertions, modifications et suppressions sur les tables métier auditées.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'journal_audit';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Numéro d''ordre, attribué par la base uniquement (IDENTITY : une valeur explicite est refusée sans SET IDENTITY_INSERT).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'journal_audit',
    @level2type = N'COLUMN', @level2name = N'id';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Horodatage (SYSDATETIMEOFFSET()) de l''instruction qui a fait la modification.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'journal_audit',
    @level2type = N'COLUMN', @level2name = N'horodatage';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Connexion SQL Server (SUSER_SNAME()) de la session qui a fait la modification.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'journal_audit',
    @level2type = N'COLUMN', @level2name = N'utilisateur';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'INSERT, UPDATE ou DELETE.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'journal_audit',
    @level2type = N'COLUMN', @level2name = N'action';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Table modifiée, qualifiée par son schéma (ex. metier.demandes).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'journal_audit',
    @level2type = N'COLUMN', @level2name = N'table_cible';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Clé primaire de la ligne modifiée, en texte.',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'journal_audit',
    @level2type = N'COLUMN', @level2name = N'cle';
EXEC sys.sp_addextendedproperty @name = N'MS_Description', @value = N'Contenu de la ligne (INSERT, DELETE) ou colonnes modifiées avec valeurs avant/après (UPDATE).',
    @level0type = N'SCHEMA', @level0name = N'metier',
    @level1type = N'TABLE', @level1name = N'journal_audit',
    @level2type = N'COLUMN', @level2name = N'details';
GO
