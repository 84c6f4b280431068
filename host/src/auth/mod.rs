//! Who a request comes from. A front-end hands the credentials it received to
//! [`Auth::authenticate`] and puts the [`Principal`] it gets into the request's scope;
//! the use cases decide what that principal may do.
//!
//! Credentials are a user's password (HTTP Basic, checked against an argon2id hash)
//! or a bearer token signed with the warehouse's key: one from Handshake (a user's,
//! expiring after `--token-ttl`) or a service token from `host tokens create`.
//! With no users and no service tokens, a host on loopback (or started with
//! `--allow-anonymous`) serves everyone as `anonymous`, an administrator.

mod principal;
mod store;
mod token;

use crate::storage::Storage;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Basic credentials' base64, with or without padding: Go's Flight clients (ADBC,
/// the JDBC driver's peers) send it unpadded.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use principal::{Grant, Principal, Role};
pub use store::{Principals, ServiceToken, Store, User, check_name, hash_password, random_id};
pub use token::{Claims, Kind, MAX_TOKEN_BYTES, SigningKey};

use crate::error::{Error, Result};

/// A successful password check is remembered this long, so a client sending Basic
/// credentials on every call pays for argon2 once, not per call.
const VERIFIED_FOR: Duration = Duration::from_secs(300);
const VERIFIED_MAX: usize = 4096;
/// The longest `authorization` header read.
pub const MAX_HEADER_BYTES: usize = 8192;

/// What a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

impl Credentials {
    /// An `authorization` header's value: `Basic <base64 user:password>` or
    /// `Bearer <token>`.
    pub fn from_header(value: Option<&[u8]>) -> Result<Self> {
        let Some(value) = value else {
            return Ok(Self::None);
        };
        let refuse = |why: String| Error::Unauthenticated(format!("authorization header: {why}"));
        if value.len() > MAX_HEADER_BYTES {
            return Err(refuse(format!(
                "{} bytes is too long (at most {MAX_HEADER_BYTES})",
                value.len()
            )));
        }
        let value = std::str::from_utf8(value).map_err(|_| refuse("not ASCII text".into()))?;
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => Ok(Self::Bearer(rest.trim().to_string())),
            "basic" => {
                let decoded = BASIC
                    .decode(rest.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        refuse("Basic credentials are not base64 of user:password".into())
                    })?;
                let (user, password) = decoded.split_once(':').ok_or_else(|| {
                    refuse("Basic credentials have no ':' between user and password".into())
                })?;
                Ok(Self::Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                })
            }
            _ => Err(refuse(
                "use `Basic <base64 user:password>` or `Bearer <token>`".into(),
            )),
        }
    }
}

pub struct Auth {
    store: Store,
    key: OnceLock<SigningKey>,
    /// Whether a host without principals serves everyone.
    anonymous: bool,
    token_ttl: Duration,
    /// Password checks that passed: a salted digest of (user, password, epoch).
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    salt: [u8; 16],
    /// argon2 is CPU- and memory-hungry: a few checks at a time.
    hashing: Semaphore,
}

impl Auth {
    pub fn new(warehouse: &Storage, anonymous: bool, token_ttl: Duration) -> Self {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).expect("the OS has randomness");
        Self {
            store: Store::new(warehouse),
            key: OnceLock::new(),
            anonymous,
            token_ttl,
            verified: Mutex::new(HashMap::new()),
            salt,
            hashing: Semaphore::new(crate::config::cores()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Does the host serve requests without credentials right now?
    pub async fn serves_anonymous(&self) -> Result<bool> {
        Ok(self.anonymous && self.store.current().await?.is_empty())
    }

    async fn key(&self) -> Result<&SigningKey> {
        if let Some(key) = self.key.get() {
            return Ok(key);
        }
        let key = self.store.signing_key().await?;
        Ok(self.key.get_or_init(|| key))
    }

    pub async fn authenticate(&self, credentials: Credentials) -> Result<Principal> {
        match credentials {
            Credentials::None if self.serves_anonymous().await? => Ok(Principal::anonymous()),
            Credentials::None => Err(Error::Unauthenticated(
                "this host requires credentials: a user and password (Basic), or a bearer \
                 token from Handshake or `host tokens create`"
                    .into(),
            )),
            Credentials::Basic { user, password } => self.check_password(&user, &password).await,
            Credentials::Bearer(token) => self.check_token(&token).await,
        }
    }

    /// Handshake: a user's password for a bearer token that expires after `--token-ttl`.
    pub async fn login(&self, user: &str, password: &str) -> Result<(Principal, String)> {
        let principal = self.check_password(user, password).await?;
        let epoch = self
            .store
            .current()
            .await?
            .users
            .get(user)
            .map(|u| u.epoch.clone())
            .ok_or_else(|| wrong_password())?;
        let now = chrono::Utc::now().timestamp();
        let token = self.key().await?.sign(&Claims {
            sub: user.to_string(),
            kind: Kind::User,
            id: epoch,
            iat: now,
            exp: Some(now + self.token_ttl.as_secs().max(1) as i64),
        });
        Ok((principal, token))
    }

    /// A new service token `name` (replacing one of that name): the token, shown once.
    pub async fn create_service_token(
        &self,
        name: &str,
        grants: Vec<Grant>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<String> {
        check_name("token", name)?;
        let id = random_id();
        let now = chrono::Utc::now();
        let key = self.key().await?;
        self.store
            .update(|p| {
                p.tokens.insert(
                    name.to_string(),
                    ServiceToken {
                        id: id.clone(),
                        grants,
                        created_at: now,
                        expires_at,
                    },
                );
                Ok(())
            })
            .await?;
        Ok(key.sign(&Claims {
            sub: name.to_string(),
            kind: Kind::Service,
            id,
            iat: now.timestamp(),
            exp: expires_at.map(|t| t.timestamp()),
        }))
    }

    async fn check_password(&self, user: &str, password: &str) -> Result<Principal> {
        let principals = self.store.current().await?;
        let found = principals.users.get(user);
        let digest = self.digest(user, password, found.map_or("", |u| u.epoch.as_str()));
        if let Some(found) = found
            && self.recently_verified(&digest)
        {
            return Ok(principal(user, &found.grants));
        }
        // An unknown user costs a hash too, so timing does not tell who exists.
        let hash = found.map(|u| u.password_hash.clone());
        let _permit = self.hashing.acquire().await.expect("never closed");
        let password = password.to_string();
        let matches = crate::blocking::run(move || {
            Ok(store::verify_password(
                &password,
                &hash.unwrap_or_else(dummy_hash),
            ))
        })
        .await?;
        match found {
            Some(found) if matches => {
                self.remember(digest);
                Ok(principal(user, &found.grants))
            }
            _ => Err(wrong_password()),
        }
    }

    async fn check_token(&self, token: &str) -> Result<Principal> {
        let claims = self
            .key()
            .await?
            .verify(token, chrono::Utc::now().timestamp())?;
        let principals = self.store.current().await?;
        let refuse = |why: String| Err(Error::Unauthenticated(why));
        match claims.kind {
            Kind::User => match principals.users.get(&claims.sub) {
                Some(user) if user.epoch == claims.id => Ok(principal(&claims.sub, &user.grants)),
                Some(_) => refuse(format!(
                    "the bearer token of user {:?} predates its password change; authenticate again",
                    claims.sub
                )),
                None => refuse(format!("user {:?} no longer exists", claims.sub)),
            },
            Kind::Service => match principals.tokens.get(&claims.sub) {
                Some(token) if token.id == claims.id => Ok(principal(&claims.sub, &token.grants)),
                _ => refuse(format!("service token {:?} was revoked", claims.sub)),
            },
        }
    }

    fn digest(&self, user: &str, password: &str, epoch: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [
            &self.salt[..],
            user.as_bytes(),
            password.as_bytes(),
            epoch.as_bytes(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    fn recently_verified(&self, digest: &[u8; 32]) -> bool {
        let verified = self.verified.lock().expect("verified cache");
        verified
            .get(digest)
            .is_some_and(|until| *until > Instant::now())
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut verified = self.verified.lock().expect("verified cache");
        if verified.len() >= VERIFIED_MAX {
            let now = Instant::now();
            verified.retain(|_, until| *until > now);
            if verified.len() >= VERIFIED_MAX {
                verified.clear();
            }
        }
        verified.insert(digest, Instant::now() + VERIFIED_FOR);
    }
}

fn principal(name: &str, grants: &[Grant]) -> Principal {
    Principal {
        name: name.to_string(),
        grants: grants.to_vec(),
    }
}

fn wrong_password() -> Error {
    Error::Unauthenticated("unknown user or wrong password".into())
}

/// The hash an unknown user's password is checked against (of a random password).
fn dummy_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_id()).unwrap_or_default())
        .clone()
}
