//! Bearer tokens: `floe1.<claims>.<signature>`, the claims JSON and an HMAC-SHA256
//! of them under the warehouse's signing key, both base64url. A token proves who it
//! was issued to and until when; what that principal may do is looked up when the
//! token is used, so a removed user or a revoked service token stops at once.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};

const PREFIX: &str = "floe1.";
/// Longer tokens are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Whom a token was issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// From a Handshake with a user's password.
    User,
    /// From `host tokens create`.
    Service,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub kind: Kind,
    /// The user's password epoch or the service token's id: a new password or a
    /// re-created token makes older tokens invalid.
    pub id: String,
    /// Issued and expiring, in seconds since the Unix epoch.
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
}

/// The warehouse's signing key.
pub struct SigningKey([u8; 32]);

impl SigningKey {
    /// The key in `path`, generated (readable by its owner only) on first use. Two
    /// processes racing to create it agree on one.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if let Some(key) = Self::read(path)? {
            return Ok(key);
        }
        let dir = path.parent().expect("the key file has a directory");
        std::fs::create_dir_all(dir).map_err(|err| io("creating", dir, err))?;
        let made = Self::generate()?;
        let temp = tempfile_in(dir)?;
        std::fs::write(&temp, made.to_hex()).map_err(|err| io("writing", &temp, err))?;
        // A hard link fails if the key exists: whoever linked first wins.
        let linked = std::fs::hard_link(&temp, path);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(made),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Self::read(path)?
                .ok_or_else(|| Error::internal("the signing key vanished while being created")),
            Err(err) => Err(io("creating", path, err)),
        }
    }

    fn read(path: &Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(&bytes, &path.display().to_string()).map(Some),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io("reading", path, err)),
        }
    }

    /// A new random key.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|err| Error::internal(format!("generating a signing key: {err}")))?;
        Ok(Self(bytes))
    }

    /// The key as stored: 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A stored key; `location` names it in the error.
    pub fn parse(stored: &[u8], location: &str) -> Result<Self> {
        std::str::from_utf8(stored)
            .ok()
            .and_then(|text| unhex(text.trim()))
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Self)
            .ok_or_else(|| {
                Error::internal(format!(
                    "{location} is not a floe signing key (64 hex digits); remove it to make \
                     a new one, which ends every token issued so far"
                ))
            })
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let body = format!(
            "{PREFIX}{}",
            B64.encode(serde_json::to_vec(claims).expect("claims serialize"))
        );
        let signature = self.mac(&body).finalize().into_bytes();
        format!("{body}.{}", B64.encode(signature))
    }

    /// The claims of a token this key signed, unexpired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims> {
        let refuse = |why: &str| Error::Unauthenticated(format!("invalid bearer token: {why}"));
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refuse("too long"));
        }
        let (body, signature) = token
            .rsplit_once('.')
            .filter(|(body, _)| body.starts_with(PREFIX))
            .ok_or_else(|| refuse("not a floe token"))?;
        let signature = B64
            .decode(signature)
            .map_err(|_| refuse("not a floe token"))?;
        self.mac(body)
            .verify_slice(&signature)
            .map_err(|_| refuse("its signature does not match this warehouse's key"))?;
        let claims: Claims = B64
            .decode(&body[PREFIX.len()..])
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| refuse("unreadable claims"))?;
        match claims.exp {
            Some(exp) if exp <= now => Err(Error::Unauthenticated(format!(
                "the bearer token of {:?} expired; authenticate again",
                claims.sub
            ))),
            _ => Ok(claims),
        }
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(body.as_bytes());
        mac
    }
}

/// A new file in `dir`, readable by its owner only.
pub(super) fn tempfile_in(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.flush())
        .map_err(|err| io("creating", &path, err))?;
    Ok(path)
}

pub(super) fn io(what: &str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        context: format!("{what} {}", path.display()),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<i64>) -> Claims {
        Claims {
            sub: "dbt".into(),
            kind: Kind::Service,
            id: "abc".into(),
            iat: 100,
            exp,
        }
    }

    #[test]
    fn a_key_verifies_its_own_unexpired_tokens_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("a/key")).unwrap();
        let again = SigningKey::load_or_create(&dir.path().join("a/key")).unwrap();
        let other = SigningKey::load_or_create(&dir.path().join("b/key")).unwrap();
        let token = key.sign(&claims(Some(200)));
        assert_eq!(again.verify(&token, 150).unwrap(), claims(Some(200)));
        let err = other.verify(&token, 150).unwrap_err().to_string();
        assert!(err.contains("signature"), "{err}");
        let err = key.verify(&token, 200).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        assert!(key.verify(&key.sign(&claims(None)), i64::MAX).is_ok());
        let forged = token.replacen("floe1.", "floe1.x", 1);
        assert!(key.verify(&forged, 150).is_err());
        for junk in [
            "",
            "floe1.",
            "x.y",
            "floe1.a.b",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(matches!(
                key.verify(junk, 0),
                Err(Error::Unauthenticated(_))
            ));
        }
    }

    #[test]
    fn a_corrupt_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "not hex").unwrap();
        let err = SigningKey::load_or_create(&path).err().unwrap().to_string();
        assert!(err.contains("not a floe signing key"), "{err}");
    }
}
