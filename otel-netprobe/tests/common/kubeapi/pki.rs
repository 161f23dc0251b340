//! The real API server's certificates and keys, made with openssl (ECDSA P-256: fast to make
//! on a busy machine, and what kubeadm offers too):
//! - `ca.pem`/`ca.key`: the cluster CA, which signs the other two and is the client CA;
//! - `apiserver.pem`/`.key`: the serving certificate for 127.0.0.1, localhost and the
//!   `kubernetes` Service's names and ClusterIP;
//! - `admin.pem`/`.key`: a client certificate in `system:masters` (what kubeadm's admin.conf
//!   holds), for the tests' own requests and `helm install`;
//! - `sa.key`/`sa.pub`: the service-account signing key pair (TokenRequest).

use std::path::Path;

/// The first address of the server's `--service-cluster-ip-range`: the `kubernetes` Service.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// The admin client certificate's user name (its group is `system:masters`).
pub const ADMIN_USER: &str = "netprobe-test-admin";

/// Writes every certificate and key into `dir`.
pub fn make(dir: &Path) {
    let run = |args: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cd {} && {args}", dir.display()))
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run(&format!(
        "openssl req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=netprobe-test-kube-ca \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
    ));
    let server_names = format!(
        "subjectAltName=IP:127.0.0.1,IP:{KUBERNETES_SERVICE_IP},DNS:localhost,DNS:kubernetes,\
         DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    );
    for (name, subject, ext) in [
        (
            "apiserver",
            "/CN=kube-apiserver".to_owned(),
            format!("{server_names}\nextendedKeyUsage=serverAuth"),
        ),
        (
            "admin",
            format!("/O=system:masters/CN={ADMIN_USER}"),
            "extendedKeyUsage=clientAuth".to_owned(),
        ),
    ] {
        run(&format!(
            "openssl req {key} -keyout {name}.key -out {name}.csr -subj {subject}"
        ));
        run(&format!("printf '{ext}\\n' > {name}.ext"));
        run(&format!(
            "openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
             -out {name}.pem -days 2 -extfile {name}.ext"
        ));
    }
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out sa.key");
    run("openssl pkey -in sa.key -pubout -out sa.pub");
}
