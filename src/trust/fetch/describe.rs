//! A failed request in words, for logs and errors: a timeout with the deadline, a proxy that
//! refused the tunnel, and above all why a TLS certificate was refused.

use super::HttpOptions;
use crate::trust::net::Origin;

/// A readable reason for a failed request.
pub(super) fn describe_error(e: &ureq::Error, options: &HttpOptions, origin: &Origin) -> String {
    let tls = match e {
        ureq::Error::Rustls(t) => Some(t),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    if let Some(t) = tls {
        return describe_tls_error(t, origin);
    }
    match e {
        ureq::Error::Timeout(t) => format!(
            "no answer in time ({t:?} deadline; --http-timeout is {} s)",
            options.io_timeout.as_secs()
        ),
        ureq::Error::ConnectProxyFailed(why) => format!(
            "the proxy {} refused the tunnel to {}:{}: {why}",
            options
                .network
                .proxy_note(origin)
                .unwrap_or_else(|| "?".into()),
            origin.host,
            origin.port
        ),
        other => other.to_string(),
    }
}

/// A TLS failure in words, naming the host: mostly, why its certificate was refused.
fn describe_tls_error(e: &rustls::Error, origin: &Origin) -> String {
    use rustls::{AlertDescription, CertificateError};
    let host = format!("{}:{}", origin.host, origin.port);
    let why = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "its issuer is not a trusted CA (not in the system trust store, and no --ca-cert for it)".to_owned(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "it has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "it is not valid yet (check the clock)".to_owned()
            }
            CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. } => {
                format!("it is not valid for the name {:?}", origin.host)
            }
            CertificateError::Revoked => "it has been revoked".to_owned(),
            CertificateError::BadSignature => "its signature is invalid".to_owned(),
            other => format!("{other:?}"),
        },
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
        | rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
        | rustls::Error::AlertReceived(AlertDescription::BadCertificate) => {
            return format!(
                "TLS with {host} failed: the server refused the connection ({e}); if it requires a client certificate, give --client-cert and --client-key"
            );
        }
        other => return format!("TLS with {host} failed: {other}"),
    };
    format!("TLS: the certificate of {host} was refused: {why}")
}
