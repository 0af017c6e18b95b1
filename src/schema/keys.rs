//! Public keys as TUF metadata lists them, signature verification, and the ed25519 signing key the
//! publisher commands use.
//!
//! Verified schemes: `ed25519` (hex public key), `ecdsa-sha2-nistp256` (PEM SubjectPublicKeyInfo,
//! DER signatures; keytype `ecdsa` or the legacy `ecdsa-sha2-nistp256`) and `rsassa-pss-sha256`
//! (PEM SubjectPublicKeyInfo). A key of any other type is kept, so the metadata still parses and
//! its signature still covers it, but it can never count toward a threshold.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::cjson;

/// A public key from metadata, as far as trustfs understands it.
#[derive(Clone)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
    RsaPss(rsa::RsaPublicKey),
    /// A key type or scheme trustfs does not implement, or key material that does not parse.
    Unsupported {
        keytype: String,
        scheme: String,
        why: String,
    },
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKey::Ed25519(_) => f.write_str("ed25519"),
            PublicKey::EcdsaP256(_) => f.write_str("ecdsa-sha2-nistp256"),
            PublicKey::RsaPss(_) => f.write_str("rsassa-pss-sha256"),
            PublicKey::Unsupported {
                keytype, scheme, ..
            } => write!(f, "unsupported({keytype}/{scheme})"),
        }
    }
}

/// One entry of a `keys` object: the parsed key and its JSON as listed.
#[derive(Clone, Debug)]
pub struct Key {
    pub key: PublicKey,
    pub keytype: String,
    pub scheme: String,
    /// The `keyval.public` string (hex or PEM), used to recognise the same key under two key ids.
    pub public: String,
}

impl Key {
    /// Parse a key object. Structural errors (not an object, missing strings) are errors; an
    /// unknown type or unparseable key material becomes [`PublicKey::Unsupported`].
    pub fn from_value(value: &Value) -> Result<Key, String> {
        let obj = value.as_object().ok_or("a key must be a JSON object")?;
        let field = |name: &str| -> Result<String, String> {
            obj.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("key field {name:?} must be a string"))
        };
        let keytype = field("keytype")?;
        let scheme = field("scheme")?;
        let keyval = obj
            .get("keyval")
            .and_then(Value::as_object)
            .ok_or("key field \"keyval\" must be an object")?;
        let public = keyval
            .get("public")
            .and_then(Value::as_str)
            .ok_or("key field \"keyval.public\" must be a string")?
            .to_owned();
        let key = match parse_public(&keytype, &scheme, &public) {
            Ok(k) => k,
            Err(why) => PublicKey::Unsupported {
                keytype: keytype.clone(),
                scheme: scheme.clone(),
                why,
            },
        };
        Ok(Key {
            key,
            keytype,
            scheme,
            public,
        })
    }

    /// The key's TUF JSON (`keytype`, `scheme`, `keyval.public`).
    pub fn to_value(&self) -> Value {
        json!({"keytype": self.keytype, "scheme": self.scheme, "keyval": {"public": self.public}})
    }

    /// The key id trustfs assigns to keys it creates: sha256 of the canonical key JSON, as
    /// securesystemslib computes it. Key ids read from metadata are labels and are not recomputed.
    pub fn compute_keyid(&self) -> String {
        // A JSON object of strings always has a canonical form.
        let canonical = cjson::to_canonical(&self.to_value()).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }

    /// The key material itself, independent of how `keyval.public` spells it (hex case, PEM
    /// line wrapping): two key ids with the same identity are one signer.
    pub fn identity(&self) -> Vec<u8> {
        use rsa::traits::PublicKeyParts;
        match &self.key {
            PublicKey::Ed25519(k) => [b"ed25519:".as_slice(), k.as_bytes()].concat(),
            PublicKey::EcdsaP256(k) => {
                [b"p256:".as_slice(), k.to_encoded_point(true).as_bytes()].concat()
            }
            PublicKey::RsaPss(k) => [
                b"rsa:".as_slice(),
                &k.n().to_bytes_be(),
                b":",
                &k.e().to_bytes_be(),
            ]
            .concat(),
            PublicKey::Unsupported { keytype, .. } => [
                b"unsupported:".as_slice(),
                keytype.as_bytes(),
                b":",
                self.public.as_bytes(),
            ]
            .concat(),
        }
    }

    /// Check `sig` over `msg`. `Err` says why the key cannot verify at all (unsupported).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<bool, String> {
        Ok(match &self.key {
            PublicKey::Ed25519(k) => match ed25519_dalek::Signature::from_slice(sig) {
                Ok(s) => k.verify_strict(msg, &s).is_ok(),
                Err(_) => false,
            },
            PublicKey::EcdsaP256(k) => {
                use p256::ecdsa::signature::Verifier;
                match p256::ecdsa::Signature::from_der(sig) {
                    Ok(s) => k.verify(msg, &s).is_ok(),
                    Err(_) => false,
                }
            }
            PublicKey::RsaPss(k) => verify_rsa_pss(k, msg, sig),
            PublicKey::Unsupported {
                keytype,
                scheme,
                why,
            } => {
                return Err(format!(
                    "key type {keytype:?} with scheme {scheme:?} is not supported ({why})"
                ))
            }
        })
    }
}

fn parse_public(keytype: &str, scheme: &str, public: &str) -> Result<PublicKey, String> {
    use p256::pkcs8::DecodePublicKey;
    match (keytype, scheme) {
        ("ed25519", "ed25519") => {
            let bytes =
                hex::decode(public).map_err(|e| format!("ed25519 public key is not hex: {e}"))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| "ed25519 public key must be 32 bytes".to_owned())?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(PublicKey::Ed25519)
                .map_err(|e| format!("invalid ed25519 public key: {e}"))
        }
        ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
            p256::ecdsa::VerifyingKey::from_public_key_pem(public)
                .map(PublicKey::EcdsaP256)
                .map_err(|e| format!("invalid ecdsa-sha2-nistp256 PEM public key: {e}"))
        }
        ("rsa", "rsassa-pss-sha256") => rsa::RsaPublicKey::from_public_key_pem(public)
            .map(PublicKey::RsaPss)
            .map_err(|e| format!("invalid RSA PEM public key: {e}")),
        _ => Err("unknown key type or scheme".to_owned()),
    }
}

/// RSASSA-PSS with SHA-256 and MGF1-SHA-256. Signers differ in salt length: securesystemslib and
/// go-tuf use the digest length, others the maximum; both are accepted, as `PSS.AUTO` does.
fn verify_rsa_pss(key: &rsa::RsaPublicKey, msg: &[u8], sig: &[u8]) -> bool {
    use rsa::traits::PublicKeyParts;
    let hashed = Sha256::digest(msg);
    let em_len = (key.n().bits() - 1).div_ceil(8);
    let max_salt = em_len.saturating_sub(32 + 2);
    [32, max_salt].iter().any(|&salt| {
        let scheme = rsa::Pss::new_with_salt::<Sha256>(salt);
        key.verify(scheme, &hashed, sig).is_ok()
    })
}

/// An ed25519 signing key, stored as PKCS#8 PEM (the form python-tuf's CryptoSigner reads).
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    pub fn generate() -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, String> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(SigningKey)
            .map_err(|e| format!("not an ed25519 PKCS#8 PEM private key: {e}"))
    }

    pub fn to_pkcs8_pem(&self) -> Result<String, String> {
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| format!("cannot encode key: {e}"))
    }

    pub fn public_key(&self) -> Key {
        let vk = self.0.verifying_key();
        Key {
            key: PublicKey::Ed25519(vk),
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            public: hex::encode(vk.as_bytes()),
        }
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer;
        self.0.sign(msg).to_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_round_trip_and_pem() {
        let sk = SigningKey::generate();
        let pem = sk.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let sk2 = SigningKey::from_pkcs8_pem(&pem).unwrap();
        let v1 = sk.to_pkcs8_pem().unwrap();
        assert!(v1.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
        let sk3 = SigningKey::from_pkcs8_pem(&v1).unwrap();
        assert_eq!(sk3.public_key().public, sk.public_key().public);
        let key = Key::from_value(&sk2.public_key().to_value()).unwrap();
        let sig = sk.sign(b"msg");
        assert_eq!(key.verify(b"msg", &sig), Ok(true));
        assert_eq!(key.verify(b"msh", &sig), Ok(false));
        assert_eq!(key.verify(b"msg", &sig[..10]), Ok(false));
        assert_eq!(key.compute_keyid().len(), 64);
    }

    #[test]
    fn unknown_key_type_parses_but_cannot_verify() {
        let v = json!({"keytype": "dsa", "scheme": "dsa-sha1", "keyval": {"public": "00"}});
        let key = Key::from_value(&v).unwrap();
        assert!(matches!(key.key, PublicKey::Unsupported { .. }));
        assert!(key
            .verify(b"m", b"s")
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn malformed_key_objects_are_errors() {
        assert!(Key::from_value(&json!("x")).is_err());
        assert!(Key::from_value(
            &json!({"keytype": 1, "scheme": "ed25519", "keyval": {"public": ""}})
        )
        .is_err());
        assert!(Key::from_value(&json!({"keytype": "ed25519", "scheme": "ed25519"})).is_err());
    }

    #[test]
    fn ecdsa_p256_verifies_der_signatures() {
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::EncodePublicKey;
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let key = Key::from_value(&json!({"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": pem}})).unwrap();
        let sig: p256::ecdsa::Signature = sk.sign(b"payload");
        assert_eq!(key.verify(b"payload", sig.to_der().as_bytes()), Ok(true));
        assert_eq!(key.verify(b"payloaD", sig.to_der().as_bytes()), Ok(false));
    }
}
