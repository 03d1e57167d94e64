//! A real HTTPS server on 127.0.0.1 with rcgen certificates: requests succeed, the certificate
//! files are rotated, and the next handshakes get the new certificate with no request failing.

use crate::{observe, support};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use selfheal::app::serve::serve_https;
use selfheal::certs::generate::{self as certs, GeneratedCerts};
use selfheal::webhook;
use selfheal::webhook::tls::{CertificateFiles, ReloadingCertResolver, server_config};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn names() -> Vec<String> {
    certs::service_dns_names("selfheal", "selfheal")
}

struct Server {
    addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    resolver: Arc<ReloadingCertResolver>,
}

async fn start(dir: &Path) -> Server {
    let resolver =
        Arc::new(ReloadingCertResolver::new(CertificateFiles::in_dir(dir), provider()).unwrap());
    tokio::spawn(resolver.clone().keep_current(Duration::from_millis(20)));
    let tls = server_config(resolver.clone(), provider()).unwrap();
    let handle = axum_server::Handle::new();
    let router = webhook::router(support::state_with_test_fixes());
    let serving = handle.clone();
    tokio::spawn(async move {
        serve_https("127.0.0.1:0".parse().unwrap(), router, tls, serving)
            .await
            .unwrap();
    });
    let addr = handle.listening().await.expect("server listening");
    Server {
        addr,
        handle,
        resolver,
    }
}

/// Client trusting the given CAs; returns the served certificate and the HTTP status line.
async fn post_review(
    addr: SocketAddr,
    cas: &[&GeneratedCerts],
) -> (CertificateDer<'static>, String) {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(der(&ca.ca_cert)).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::try_from("selfheal.selfheal.svc").unwrap();
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake");
    let served = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let body = std::fs::read(support::data_path("deployment-create.json")).unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nHost: selfheal.selfheal.svc\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    assert!(text.contains("\"allowed\":true"), "{text}");
    (served, text.lines().next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_needs_no_restart_and_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let first = certs::generate(&names()).unwrap();
    let second = certs::generate(&names()).unwrap();
    certs::write(dir.path(), &first).unwrap();
    let server = start(dir.path()).await;

    let (served, status) = post_review(server.addr, &[&first]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(served, der(&first.cert));

    // Requests keep flowing during the rotation; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, completed) = (stop.clone(), completed.clone());
        let (first, second) = (first.clone(), second.clone());
        let addr = server.addr;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (_, status) = post_review(addr, &[&first, &second]).await;
                assert_eq!(status, "HTTP/1.1 200 OK");
                completed.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    certs::write(dir.path(), &second).unwrap();
    let mut rotated = false;
    for _ in 0..250 {
        let (served, _) = post_review(server.addr, &[&first, &second]).await;
        if served == der(&second.cert) {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rotated, "the new certificate was never served");
    assert_eq!(server.resolver.serving_certificate(), der(&second.cert));

    stop.store(true, Ordering::Relaxed);
    load.await.expect("no request failed during the rotation");
    assert!(completed.load(Ordering::Relaxed) > 0);
    server.handle.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_new_pair_is_refused_and_the_old_certificate_stays() {
    observe::capture();
    let dir = tempfile::tempdir().unwrap();
    let good = certs::generate(&names()).unwrap();
    certs::write(dir.path(), &good).unwrap();
    let server = start(dir.path()).await;

    // A certificate with someone else's key: the reload loop sees it and refuses it (twice, so
    // it was not a half-written pair caught once).
    let other = certs::generate(&names()).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &other.cert).unwrap();
    let cert_path = dir.path().join("tls.crt").display().to_string();
    support::eventually("the reload loop refuses the new pair twice", || {
        observe::logged(&[
            "new serving certificate refused",
            "does not belong",
            &cert_path,
        ]) >= 2
    })
    .await;
    let (served, status) = post_review(server.addr, &[&good]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(served, der(&good.cert));
    let error = server.resolver.reload().unwrap_err().to_string();
    assert!(error.contains("does not belong"), "{error}");

    // Garbage.
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    let error = server.resolver.reload().unwrap_err().to_string();
    assert!(error.contains("tls.crt"), "{error}");
    let (served, _) = post_review(server.addr, &[&good]).await;
    assert_eq!(served, der(&good.cert));
    server.handle.shutdown();
}
