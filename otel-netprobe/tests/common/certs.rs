//! Test certificates, made with openssl: a CA, a server certificate for 127.0.0.1 and a client
//! certificate (`ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key` in `dir`).

use std::path::Path;

/// Writes the CA, server and client certificates and keys into `dir`.
pub fn make(dir: &Path) {
    let run = |args: &str| {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cd {} && {args}", dir.display()))
            .output()
            .expect("openssl");
        assert!(
            ok.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    run(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=netprobe-test-ca",
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        run(&format!(
            "openssl req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}"
        ));
        run(&format!("printf '{ext}\\n' > {name}.ext"));
        run(&format!(
            "openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 1 -extfile {name}.ext"
        ));
    }
}
