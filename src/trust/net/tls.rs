//! The TLS configuration of https fetchers: the system trust store (or Mozilla's roots when it
//! is empty), `--ca-cert` certificates on top, and the client certificate of `--client-cert` and
//! `--client-key`, checked at start to go together.

use std::path::Path;
use std::sync::Arc;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::files::{read_public_file, read_secret};
use super::Network;

impl Network {
    /// The TLS configuration of https fetchers (roots and client certificate), and a sentence
    /// saying where the roots come from.
    pub fn tls(&self) -> &(TlsConfig, String) {
        self.tls.get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let system: Vec<Certificate<'static>> = loaded
                .certs
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            let extra = self.extra_cas.len();
            let (roots, mut note) = if system.is_empty() && extra == 0 {
                (
                    RootCerts::WebPki,
                    "no certificates in the system trust store: using Mozilla's roots (compiled in)"
                        .to_owned(),
                )
            } else {
                let note = format!(
                    "{} CA certificates from the system trust store{}",
                    system.len(),
                    if extra > 0 {
                        format!(
                            ", {extra} from --ca-cert ({})",
                            self.extra_ca_files
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        String::new()
                    }
                );
                let mut all = system;
                all.extend(self.extra_cas.iter().cloned());
                (RootCerts::Specific(Arc::new(all)), note)
            };
            if !loaded.errors.is_empty() {
                note.push_str(&format!(
                    " ({} problems reading the store, the first: {})",
                    loaded.errors.len(),
                    loaded.errors[0]
                ));
            }
            if self.client.is_some() {
                note.push_str("; a client certificate is presented");
            }
            let config = TlsConfig::builder()
                .root_certs(roots)
                .client_cert(self.client.clone())
                .build();
            (config, note)
        })
    }
}

/// The certificates in a PEM file; an error when there is none.
pub(super) fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("not valid PEM: {e}")),
        }
    }
    if out.is_empty() {
        return Err("no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(out)
}

pub(super) fn client_cert(cert: &Path, key: &Path) -> Result<ClientCert, String> {
    let pem =
        read_public_file(cert).map_err(|e| format!("--client-cert {}: {e}", cert.display()))?;
    let chain =
        pem_certificates(&pem).map_err(|e| format!("--client-cert {}: {e}", cert.display()))?;
    let key_pem = read_secret(key).map_err(|e| format!("--client-key {}: {e}", key.display()))?;
    let private = PrivateKey::from_pem(&key_pem).map_err(|_| {
        format!(
            "--client-key {}: not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    // The pair must match, or every handshake would fail (in ureq, with a panic): check now.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der_chain: Vec<rustls::pki_types::CertificateDer<'static>> = chain
        .iter()
        .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
        .collect();
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(private.der().to_vec())
        .map_err(|e| format!("--client-key {}: {e}", key.display()))?;
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(der_chain, der_key)
        .map_err(|e| {
            format!(
                "--client-key {} does not go with --client-cert {}: {e}",
                key.display(),
                cert.display()
            )
        })?;
    Ok(ClientCert::new_with_certs(&chain, private))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_must_hold_certificates() {
        assert!(pem_certificates(b"hello")
            .unwrap_err()
            .contains("no PEM certificate"));
        assert!(pem_certificates(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
    }
}
