-- Schema 6: people and where they sign in. Sign-in providers (LDAP, OpenID
-- Connect, GitHub, Google, SAML), the users they bring, groups (kept by hand
-- or synced from a provider's groups at each sign-in), grants of a role on a
-- pool object to a user or a group, one-time recovery codes, and the state
-- of a redirect sign-in between its start and its callback. AUTOINCREMENT
-- everywhere: an id is never given out twice, so a grant, a mapping or a
-- bookmark can never come to mean someone or something else.
CREATE TABLE auth_providers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('ldap', 'oidc', 'github', 'google', 'saml')),
    -- Shown on the sign-in page ("Sign in with Corporate SSO").
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    -- In URLs: /auth/<slug>/start, /auth/<slug>/callback.
    slug TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL DEFAULT 0,
    is_default INTEGER NOT NULL DEFAULT 0,
    -- Settings without secrets (JSON); secrets apart, encrypted (SecretBox).
    config TEXT NOT NULL DEFAULT '{}',
    secrets_enc TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX auth_providers_one_default ON auth_providers(is_default)
    WHERE is_default = 1;

-- A user a provider brought: who they are there (a stable subject, never a
-- name that can be reassigned), and what they were last seen as.
ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN provider_id INTEGER REFERENCES auth_providers(id);
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN last_sign_in REAL;
CREATE UNIQUE INDEX users_external ON users(provider_id, external_id)
    WHERE provider_id IS NOT NULL;

CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);

-- source: 'manual' (an administrator added them) or 'provider' (synced at
-- sign-in from the provider's groups through group_mappings; replaced at
-- every sign-in with that provider, manual memberships untouched).
CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source TEXT NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'provider')),
    added_at REAL NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

-- A provider's group (an LDAP group DN, an OIDC "groups" claim value, a
-- SAML attribute value, a GitHub org/team) mapped to a XenKeep group.
CREATE TABLE group_mappings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id INTEGER NOT NULL REFERENCES auth_providers(id) ON DELETE CASCADE,
    external_group TEXT NOT NULL,
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    UNIQUE (provider_id, external_group, group_id)
);

-- A role on an object, given to a user or a group. object_kind: 'all' (every
-- pool; object_ref ''), 'pool' (its XAPI uuid), 'host', 'sr', 'network',
-- 'vm', 'template' (XAPI uuids), 'backup-job', 'replication-job' (their
-- ids). Deny by default: no grant, no access.
CREATE TABLE grants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'group')),
    subject_id INTEGER NOT NULL,
    object_kind TEXT NOT NULL,
    object_ref TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    UNIQUE (subject_kind, subject_id, object_kind, object_ref)
);
CREATE INDEX grants_object ON grants(object_kind, object_ref);
-- A subject's grants go with it.
CREATE TRIGGER grants_of_deleted_user AFTER DELETE ON users BEGIN
    DELETE FROM grants WHERE subject_kind = 'user' AND subject_id = old.id;
END;
CREATE TRIGGER grants_of_deleted_group AFTER DELETE ON groups BEGIN
    DELETE FROM grants WHERE subject_kind = 'group' AND subject_id = old.id;
END;

-- One-time recovery codes (hashes only), for a lost authenticator.
CREATE TABLE recovery_codes (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    used_at REAL,
    PRIMARY KEY (user_id, code_hash)
);

-- A redirect sign-in (OIDC, GitHub, Google, SAML) between its start and its
-- callback: looked up by the hash of its state (or SAML request id), used
-- once, expired after minutes. data_enc holds the nonce, the PKCE verifier
-- and the return path, encrypted.
CREATE TABLE auth_flows (
    state_hash TEXT PRIMARY KEY,
    provider_id INTEGER NOT NULL REFERENCES auth_providers(id) ON DELETE CASCADE,
    data_enc TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- Assertions (SAML) and ID tokens already accepted, until they expire:
-- a replayed one is refused.
CREATE TABLE auth_replay (
    provider_id INTEGER NOT NULL REFERENCES auth_providers(id) ON DELETE CASCADE,
    token_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (provider_id, token_id)
);
