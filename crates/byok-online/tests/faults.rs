//! A network cut during `byok-online import`: the client fails with a clear message, the
//! state is clear (the key is there or not, and `show` says which), and a retry is safe.

mod common;

use byok_core::target::KeyKind;
use byok_core::{KekTransfer, TargetKey};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards TCP to the emulator. While `cut` is on, a connection on which the client sent a
/// large chunk (the upload) is closed as soon as the server starts answering: the request
/// lands, the response never arrives.
async fn cutting_proxy(listener: TcpListener, upstream: SocketAddr, cut: Arc<AtomicBool>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let cut = cut.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (mut cr, mut cw) = client.split();
            let (mut sr, mut sw) = server.split();
            let mut big_upload = false;
            let (mut cbuf, mut sbuf) = (vec![0u8; 65536], vec![0u8; 65536]);
            loop {
                tokio::select! {
                    n = cr.read(&mut cbuf) => {
                        let Ok(n) = n else { return };
                        if n == 0 { return; }
                        if n > 2500 && cut.load(Ordering::SeqCst) { big_upload = true; }
                        if sw.write_all(&cbuf[..n]).await.is_err() { return; }
                    }
                    n = sr.read(&mut sbuf) => {
                        let Ok(n) = n else { return };
                        if n == 0 || big_upload { return; } // the cut
                        if cw.write_all(&sbuf[..n]).await.is_err() { return; }
                    }
                }
            }
        });
    }
}

async fn online(args: &[&str], cwd: &std::path::Path, state: &std::path::Path) -> (bool, String) {
    // The retries of a cut request run on Microsoft's schedule at a 100th of its pace.
    let mut full = vec![
        "--emulator".to_string(),
        state.display().to_string(),
        "--pace-window-ms".to_string(),
        "100".to_string(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    let cwd = cwd.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_byok-online"))
            .args(full)
            .stdin(std::process::Stdio::null())
            .current_dir(cwd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_during_import_is_reported_and_a_retry_is_safe() {
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    // The emulator sits behind the proxy: its key ids name the proxy's port, and clients
    // resolve its vault host to the proxy's address.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let emu = kv_emulator::start(kv_emulator::Config {
        public_url: Some(format!("https://emulator.vault.azure.net:{}", proxy.port())),
        public_address: Some(proxy),
        ..kv_emulator::Config::new(state.path())
    })
    .await
    .unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    tokio::spawn(cutting_proxy(listener, emu.addr, cut.clone()));
    let (w, s) = (work.path(), state.path());

    let (ok, text) = online(
        &[
            "kek",
            "create",
            "--name",
            "KEK",
            "--size",
            "2048",
            "--out",
            "kek.transfer",
        ],
        w,
        s,
    )
    .await;
    assert!(ok, "{text}");
    // An RSA 3072 target: its upload is one large TLS write.
    let transfer =
        KekTransfer::parse(&std::fs::read_to_string(w.join("kek.transfer")).unwrap()).unwrap();
    let target = TargetKey::generate(KeyKind::Rsa { bits: 3072 }).unwrap();
    common::package_for(
        &transfer.kid,
        &transfer.key,
        &target,
        &w.join("t.byok"),
        true,
    );
    std::fs::write(w.join("t.pem"), target.public_key().unwrap().to_pem()).unwrap();

    // The cut: every upload reaches the vault, no answer comes back.
    cut.store(true, Ordering::SeqCst);
    let (ok, text) = online(&["import", "--name", "t", "--byok-file", "t.byok"], w, s).await;
    assert!(!ok, "the cut import succeeded: {text}");
    assert!(
        text.contains("the connection broke during the import of t"),
        "{text}"
    );
    assert!(
        text.contains("running the import again with --new-version is safe"),
        "{text}"
    );

    // The state is clear: show says the key is there (the uploads landed) and is the HSM's.
    cut.store(false, Ordering::SeqCst);
    let (ok, text) = online(&["--output", "json", "show", "--name", "t"], w, s).await;
    assert!(ok, "{text}");
    let shown: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        shown["public_key_sha256"],
        target.public_key().unwrap().fingerprint().to_hex()
    );

    // A plain retry is refused: the key exists, and came from this very package (its tag).
    let (ok, text) = online(&["import", "--name", "t", "--byok-file", "t.byok"], w, s).await;
    assert!(
        !ok && text.contains("came from this same package") && text.contains("--new-version"),
        "{text}"
    );
    // A retry with --new-version is safe: it imports the same key again and verify proves it.
    let (ok, text) = online(
        &[
            "import",
            "-n",
            "t",
            "--byok-file",
            "t.byok",
            "--new-version",
        ],
        w,
        s,
    )
    .await;
    assert!(
        ok && text
            .lines()
            .any(|l| l.starts_with("public_key_check:") && l.ends_with(" matches"))
            && text.contains("added a version"),
        "{text}"
    );
    let (ok, text) = online(&["verify", "--name", "t", "--public-key", "t.pem"], w, s).await;
    assert!(ok, "{text}");
}
