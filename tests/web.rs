//! The tool's HTTP server (`metrics serve`, and later the backup monitor) as an attacker and
//! bad luck would treat it: a thousand idle sockets against a 1,024 open-file limit, slow and
//! oversized headers, clear text on a public address, and TLS with basic auth checked with
//! curl.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A running `metrics serve` under `ulimit -n 1024` (a default systemd unit's limit),
/// stopped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(env: &Env, extra: &[&str], scheme_ok: impl Fn(u16) -> bool) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["metrics", "serve", "--listen", &listen];
        args.extend_from_slice(extra);
        let child = env
            .command(
                &["bash", "-c", "ulimit -n 1024; exec \"$@\"", "bash"],
                &args,
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the exporter");
        let s = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if scheme_ok(port) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the exporter did not answer on {listen}");
    }

    fn plain(env: &Env) -> Server {
        Server::start(env, &[], |port| {
            get(port, "/healthz").is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET, the whole answer.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    Ok(raw)
}

/// Lets this test process open more sockets than the server may.
fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max.min(8192);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= 1300,
        "the open-file limit is too low for this test"
    );
}

#[test]
fn a_thousand_idle_sockets_do_not_starve_a_scrape() {
    raise_open_files();
    let env = Env::new(Engine::Postgres);
    let server = Server::plain(&env);
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect(("127.0.0.1", server.port)).unwrap());
    }
    // Half of them have even started a request.
    for s in idle.iter_mut().step_by(2) {
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    }
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let answer = get(server.port, "/metrics").expect("a scrape among 1,100 idle sockets");
    let took = start.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert!(answer.contains("mairie_dba_up"), "the metrics came back");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The server closed the idle ones it could not keep (256 at most stay open).
    let closed = idle
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut b = [0u8; 64];
            match (&mut &**s).read(&mut b) {
                // End of stream, or a 408/431 answer before closing.
                Ok(n) => n == 0 || b.starts_with(b"HTTP/1.1 4"),
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        })
        .count();
    assert!(
        closed >= 1100 - 256,
        "only {closed} idle sockets were closed"
    );
}

#[test]
fn slow_and_oversized_headers_are_cut_off() {
    let env = Env::new(Engine::Postgres);
    let server = Server::plain(&env);
    // 380 KB of headers: refused once the 16 KiB buffer is full, the connection closed.
    let mut big = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = big.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    let line = format!("X-Pad: {}\r\n", "a".repeat(1000));
    for _ in 0..380 {
        if big.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );

    // A header trickled one byte a second is dropped after the 10 s header timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let start = Instant::now();
    let mut cut = false;
    while start.elapsed() < Duration::from_secs(20) {
        if slow.write_all(b"a").is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(cut, "a slow header was still accepted after 20 s");
    assert!(
        start.elapsed() >= Duration::from_secs(9),
        "cut before the timeout"
    );
    // And the server still answers.
    assert!(get(server.port, "/healthz")
        .unwrap()
        .starts_with("HTTP/1.1 200"));
}

#[test]
fn clear_text_on_a_public_address_needs_insisting() {
    let env = Env::new(Engine::Postgres);
    let port = free_port().to_string();
    let listen = format!("0.0.0.0:{port}");
    env.run(&["metrics", "serve", "--listen", &listen])
        .code(2)
        .one_line_error()
        .stderr_has("without TLS")
        .stderr_has("--insecure-listen");
}

/// A self-signed certificate for localhost, and its key, in `dir`.
fn certificate(dir: &Path) {
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
        ])
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.crt"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl made no certificate");
}

#[test]
fn tls_and_basic_auth_from_a_web_config_file() {
    let env = Env::new(Engine::Postgres);
    let dir = env.path("web");
    std::fs::create_dir_all(&dir).unwrap();
    certificate(&dir);
    let hash = bcrypt::hash("s3cret-scrape", 4).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: '{hash}'\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
        ),
    )
    .unwrap();
    let web = dir.join("web.yml").display().to_string();
    let ca = dir.join("server.crt").display().to_string();
    let ca2 = ca.clone();
    let server = Server::start(&env, &["--web.config.file", &web], move |port| {
        curl_status(
            &format!("https://localhost:{port}/healthz"),
            &["--cacert", &ca2],
        ) == "401"
    });
    let url = format!("https://localhost:{}/metrics", server.port);
    assert_eq!(
        curl_status(&url, &["--cacert", &ca, "-u", "prometheus:s3cret-scrape"]),
        "200"
    );
    assert_eq!(
        curl_status(&url, &["--cacert", &ca, "-u", "prometheus:wrong"]),
        "401"
    );
    assert_eq!(curl_status(&url, &["--cacert", &ca]), "401");
    assert_eq!(
        curl_status(&url, &["--cacert", &ca, "-u", "nobody:s3cret-scrape"]),
        "401"
    );
    // The response headers of the file are sent; clear HTTP gets nothing.
    let out = Command::new("curl")
        .args([
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
            &ca,
            "-u",
            "prometheus:s3cret-scrape",
        ])
        .arg(&url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .to_ascii_lowercase()
        .contains("x-content-type-options: nosniff"));
    assert_eq!(
        curl_status(&format!("http://localhost:{}/metrics", server.port), &[]),
        "000"
    );

    // A broken file is a configuration error naming the key.
    std::fs::write(
        dir.join("bad.yml"),
        "basic_auth_users:\n  prometheus: plain-password\n",
    )
    .unwrap();
    let bad = dir.join("bad.yml").display().to_string();
    env.run(&[
        "metrics",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--web.config.file",
        &bad,
    ])
    .code(2)
    .one_line_error()
    .stderr_has("bad.yml: basic_auth_users.prometheus: is not a bcrypt hash");
    std::fs::write(
        dir.join("unknown.yml"),
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
    )
    .unwrap();
    let unknown = dir.join("unknown.yml").display().to_string();
    env.run(&[
        "metrics",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--web.config.file",
        &unknown,
    ])
    .code(2)
    .one_line_error()
    .stderr_has("cipher_suites");
}
