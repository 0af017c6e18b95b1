//! The network of a remote mount: TLS roots, proxy and credentials from the command line, checked
//! before anything is fetched.

use std::path::PathBuf;

use super::Args;
use crate::log_event;
use crate::trust;

/// The network configuration of a remote mount (TLS, proxy, credentials), checked now, and one
/// log line each about how every URL given is reached.
pub(super) fn network_of(args: &Args) -> Result<trust::Network, String> {
    let netrc = match (&args.netrc_file, args.netrc) {
        (Some(f), _) => Some(f.clone()),
        (None, true) => Some(
            std::env::var_os("NETRC")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc")))
                .ok_or("--netrc: neither NETRC nor HOME is set")?,
        ),
        (None, false) => None,
    };
    let opts = trust::NetOptions {
        ca_certs: args.ca_cert.clone(),
        proxy: args.proxy.clone(),
        auth_files: args.auth_file.clone(),
        netrc,
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
    };
    let network = trust::Network::new(&opts)?;
    let urls = args
        .metadata_url
        .iter()
        .chain(&args.targets_url)
        .chain(&args.mirror);
    let mut origins: Vec<trust::Origin> = urls.filter_map(|u| trust::Origin::of(u).ok()).collect();
    origins.sort();
    origins.dedup();
    for spec in &args.auth_file {
        if let Some((scope, _)) = spec.split_once('=') {
            if let Ok(o) = trust::Origin::of(scope) {
                if !origins.contains(&o) {
                    return Err(format!(
                        "--auth-file {spec}: {o} is not the origin of any URL given (metadata, targets, mirrors)"
                    ));
                }
            }
        }
    }
    for origin in &origins {
        for note in network.notes_for(origin) {
            log_event!("{note}");
        }
    }
    Ok(network)
}
