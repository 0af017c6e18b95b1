//! Public keys as TUF metadata lists them, signature verification, and the signing keys the
//! publisher commands use (ed25519, ecdsa-p256, rsa-pss; plain or passphrase-encrypted PKCS#8).
//!
//! Verified schemes: `ed25519` (hex public key), `ecdsa-sha2-nistp256` (PEM SubjectPublicKeyInfo,
//! DER signatures; keytype `ecdsa` or the legacy `ecdsa-sha2-nistp256`) and `rsassa-pss-sha256`
//! (PEM SubjectPublicKeyInfo). A key of any other type is kept, so the metadata still parses and
//! its signature still covers it, but it can never count toward a threshold.

use std::fmt;

use pkcs8::EncodePrivateKey;
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

    /// Whether trustfs (and the usual TUF clients) can verify signatures by this key: a
    /// supported type, and RSA keys of 2048 to 4096 bits. What a publisher may list.
    pub fn usable(&self) -> Result<(), String> {
        use rsa::traits::PublicKeyParts;
        match &self.key {
            PublicKey::Unsupported {
                keytype,
                scheme,
                why,
            } => Err(format!(
                "key type {keytype:?} with scheme {scheme:?} is not supported ({why})"
            )),
            PublicKey::RsaPss(k) if !(2048..=4096).contains(&k.n().bits()) => Err(format!(
                "an RSA key of {} bits (use 2048 to 4096)",
                k.n().bits()
            )),
            _ => Ok(()),
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

/// The algorithms trustfs signs with (and the TUF key type and scheme each is listed under).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// `ed25519` / `ed25519`: the default.
    Ed25519,
    /// `ecdsa` / `ecdsa-sha2-nistp256` (NIST P-256, DER signatures), as securesystemslib lists it.
    EcdsaP256,
    /// `rsa` / `rsassa-pss-sha256` (3072-bit keys, PSS with MGF1-SHA-256, 32-byte salt).
    RsaPss,
}

impl KeyType {
    pub fn parse(s: &str) -> Result<KeyType, String> {
        match s {
            "ed25519" => Ok(KeyType::Ed25519),
            "ecdsa" | "ecdsa-p256" | "ecdsa-sha2-nistp256" => Ok(KeyType::EcdsaP256),
            "rsa" | "rsa-pss" | "rsassa-pss-sha256" => Ok(KeyType::RsaPss),
            other => Err(format!(
                "unknown key type {other:?} (use ed25519, ecdsa or rsa)"
            )),
        }
    }
}

/// Bits of the RSA keys trustfs generates.
pub const RSA_BITS: usize = 3072;

/// PBKDF2-SHA256 iterations for keys trustfs encrypts (OWASP's 2023 figure for SHA-256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// A private signing key: ed25519, ecdsa-p256 or rsa-pss, stored as PKCS#8 PEM (the form
/// python-tuf's `CryptoSigner` and python's `cryptography` read and write), plain or
/// passphrase-encrypted (`ENCRYPTED PRIVATE KEY`, PBES2).
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    EcdsaP256(p256::ecdsa::SigningKey),
    RsaPss(Box<rsa::RsaPrivateKey>),
}

impl SigningKey {
    /// A new ed25519 key.
    pub fn generate() -> SigningKey {
        SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    /// A new key of `kind`.
    pub fn generate_of(kind: KeyType) -> Result<SigningKey, String> {
        Ok(match kind {
            KeyType::Ed25519 => SigningKey::generate(),
            KeyType::EcdsaP256 => {
                SigningKey::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
            }
            KeyType::RsaPss => SigningKey::RsaPss(Box::new(
                rsa::RsaPrivateKey::new(&mut rand_core::OsRng, RSA_BITS)
                    .map_err(|e| format!("cannot generate an RSA key: {e}"))?,
            )),
        })
    }

    pub fn kind(&self) -> KeyType {
        match self {
            SigningKey::Ed25519(_) => KeyType::Ed25519,
            SigningKey::EcdsaP256(_) => KeyType::EcdsaP256,
            SigningKey::RsaPss(_) => KeyType::RsaPss,
        }
    }

    /// Whether `pem` is a passphrase-encrypted PKCS#8 key.
    pub fn is_encrypted_pem(pem: &str) -> bool {
        pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    }

    /// An unencrypted PKCS#8 PEM key of any of the three types.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, String> {
        let (label, doc) = pkcs8::SecretDocument::from_pem(pem)
            .map_err(|e| format!("not a PKCS#8 PEM private key: {e}"))?;
        match label {
            "PRIVATE KEY" => SigningKey::from_pkcs8_der(doc.as_bytes()),
            "ENCRYPTED PRIVATE KEY" => {
                Err("the key is encrypted: a passphrase is needed".to_owned())
            }
            other => Err(format!(
                "a PEM {other:?} block, not a PKCS#8 PRIVATE KEY (convert it: openssl pkcs8 -topk8)"
            )),
        }
    }

    /// A PKCS#8 PEM key, decrypted with `passphrase` if it is encrypted.
    pub fn from_pem(pem: &str, passphrase: Option<&[u8]>) -> Result<SigningKey, String> {
        if !SigningKey::is_encrypted_pem(pem) {
            return SigningKey::from_pkcs8_pem(pem);
        }
        let passphrase = passphrase.ok_or("the key is encrypted: a passphrase is needed")?;
        let (label, doc) = pkcs8::Document::from_pem(pem)
            .map_err(|e| format!("not a PKCS#8 PEM private key: {e}"))?;
        if label != "ENCRYPTED PRIVATE KEY" {
            return Err(format!("unexpected PEM block {label:?}"));
        }
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| format!("not an encrypted PKCS#8 key: {e}"))?;
        let plain = info.decrypt(passphrase).map_err(|_| {
            "cannot decrypt the key: wrong passphrase (or an unsupported encryption scheme)"
                .to_owned()
        })?;
        SigningKey::from_pkcs8_der(plain.as_bytes())
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, String> {
        use pkcs8::DecodePrivateKey;
        let info = pkcs8::PrivateKeyInfo::try_from(der)
            .map_err(|e| format!("not a PKCS#8 private key: {e}"))?;
        let oid = info.algorithm.oid;
        const ED25519: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");
        const EC: pkcs8::ObjectIdentifier =
            pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
        const RSA: pkcs8::ObjectIdentifier =
            pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
        if oid == ED25519 {
            ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map(SigningKey::Ed25519)
                .map_err(|e| format!("not a valid ed25519 key: {e}"))
        } else if oid == EC {
            p256::ecdsa::SigningKey::from_pkcs8_der(der)
                .map(SigningKey::EcdsaP256)
                .map_err(|e| format!("not a valid NIST P-256 key (the only curve supported): {e}"))
        } else if oid == RSA {
            rsa::RsaPrivateKey::from_pkcs8_der(der)
                .map(|k| SigningKey::RsaPss(Box::new(k)))
                .map_err(|e| format!("not a valid RSA key: {e}"))
        } else {
            Err(format!(
                "a private key of algorithm {oid}, not ed25519, ecdsa (P-256) or rsa"
            ))
        }
    }

    fn to_pkcs8_der(&self) -> Result<pkcs8::SecretDocument, String> {
        let encoded = match self {
            SigningKey::Ed25519(k) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_der(),
            SigningKey::EcdsaP256(k) => k.to_pkcs8_der(),
            SigningKey::RsaPss(k) => k.to_pkcs8_der(),
        };
        encoded.map_err(|e| format!("cannot encode key: {e}"))
    }

    /// Unencrypted PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<String, String> {
        self.to_pkcs8_der()?
            .to_pem("PRIVATE KEY", pkcs8::LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| format!("cannot encode key: {e}"))
    }

    /// Encrypted PKCS#8 PEM: PBES2 with PBKDF2-HMAC-SHA256 (`PBKDF2_ITERATIONS`) and
    /// AES-256-CBC, random salt and IV.
    pub fn to_encrypted_pem(&self, passphrase: &[u8]) -> Result<String, String> {
        use rand_core::RngCore;
        let der = self.to_pkcs8_der()?;
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_bytes())
            .map_err(|e| format!("cannot encode key: {e}"))?;
        let (mut salt, mut iv) = ([0u8; 16], [0u8; 16]);
        rand_core::OsRng.fill_bytes(&mut salt);
        rand_core::OsRng.fill_bytes(&mut iv);
        let params =
            pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
                .map_err(|e| format!("cannot encrypt key: {e}"))?;
        let doc = info
            .encrypt_with_params(params, passphrase)
            .map_err(|e| format!("cannot encrypt key: {e}"))?;
        doc.to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| format!("cannot encrypt key: {e}"))
    }

    /// The public key as TUF lists it (securesystemslib's key types and schemes; PEM
    /// SubjectPublicKeyInfo for ecdsa and rsa).
    pub fn public_key(&self) -> Key {
        use p256::pkcs8::EncodePublicKey;
        match self {
            SigningKey::Ed25519(k) => {
                let vk = k.verifying_key();
                Key {
                    key: PublicKey::Ed25519(vk),
                    keytype: "ed25519".into(),
                    scheme: "ed25519".into(),
                    public: hex::encode(vk.as_bytes()),
                }
            }
            SigningKey::EcdsaP256(k) => {
                let vk = *k.verifying_key();
                Key {
                    key: PublicKey::EcdsaP256(vk),
                    keytype: "ecdsa".into(),
                    scheme: "ecdsa-sha2-nistp256".into(),
                    public: vk
                        .to_public_key_pem(pkcs8::LineEnding::LF)
                        .unwrap_or_default(),
                }
            }
            SigningKey::RsaPss(k) => {
                let pk = k.to_public_key();
                Key {
                    public: pk
                        .to_public_key_pem(pkcs8::LineEnding::LF)
                        .unwrap_or_default(),
                    key: PublicKey::RsaPss(pk),
                    keytype: "rsa".into(),
                    scheme: "rsassa-pss-sha256".into(),
                }
            }
        }
    }

    /// A signature over `msg` in the key's scheme.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(msg).to_bytes().to_vec()
            }
            SigningKey::EcdsaP256(k) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_der().as_bytes().to_vec()
            }
            SigningKey::RsaPss(k) => {
                let hashed = Sha256::digest(msg);
                // Signing with a valid key and a 32-byte hash cannot fail short of a broken RNG;
                // an empty signature then fails every verification instead of a panic.
                k.sign_with_rng(
                    &mut rand_core::OsRng,
                    rsa::Pss::new_with_salt::<Sha256>(32),
                    &hashed,
                )
                .unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_signs_round_trips_and_encrypts() {
        for kind in [KeyType::Ed25519, KeyType::EcdsaP256, KeyType::RsaPss] {
            let sk = SigningKey::generate_of(kind).unwrap();
            assert_eq!(sk.kind(), kind);
            let public = Key::from_value(&sk.public_key().to_value()).unwrap();
            let sig = sk.sign(b"msg");
            assert_eq!(public.verify(b"msg", &sig), Ok(true), "{kind:?}");
            assert_eq!(public.verify(b"other", &sig), Ok(false), "{kind:?}");
            let plain = sk.to_pkcs8_pem().unwrap();
            assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----"));
            let back = SigningKey::from_pkcs8_pem(&plain).unwrap();
            assert_eq!(back.public_key().public, sk.public_key().public);
            let enc = sk.to_encrypted_pem(b"correct horse").unwrap();
            assert!(SigningKey::is_encrypted_pem(&enc), "{enc}");
            assert!(!enc.contains(&plain[40..80]));
            let back = SigningKey::from_pem(&enc, Some(b"correct horse")).unwrap();
            assert_eq!(back.public_key().public, sk.public_key().public);
            let wrong = SigningKey::from_pem(&enc, Some(b"wrong")).err().unwrap();
            assert!(wrong.contains("wrong passphrase"), "{wrong}");
            assert!(SigningKey::from_pem(&enc, None)
                .err()
                .unwrap()
                .contains("passphrase"));
            assert!(SigningKey::from_pkcs8_pem(&enc)
                .err()
                .unwrap()
                .contains("encrypted"));
        }
        assert!(KeyType::parse("dsa").is_err());
        let e = SigningKey::from_pkcs8_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        );
        assert!(e.is_err());
    }

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
