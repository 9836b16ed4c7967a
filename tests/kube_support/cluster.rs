//! A real API server for one test: etcd and kube-apiserver on loopback, started with the
//! flags of `hack/apiserver.sh`, certificates from rcgen, data in a temp dir.
//!
//! The test talks to it as an admin (client certificate in `system:masters`). The
//! controller gets its own kubeconfig: a client certificate for the user
//! `system:serviceaccount:portcullis-system:portcullis`, bound to a ClusterRole built from
//! the chart's rule files and, per election namespace, a Role from the chart's
//! own-namespace rules. So a permission the chart forgets fails a test.
//!
//! There is no controller-manager: nothing creates EndpointSlices, ServiceAccounts or
//! garbage-collects, and deleted namespaces stay Terminating. Tests create what they need
//! in a fresh namespace and never wait for deletions of namespaces.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::pki::{self, Ca};
use super::process::{Process, TempDir};
use super::{random_suffix, tools};

/// The user the controller runs as, and the names of its RBAC objects.
pub const CONTROLLER_SA_NAMESPACE: &str = "portcullis-system";
pub const CONTROLLER_SA_NAME: &str = "portcullis";
pub const CONTROLLER_ROLE: &str = "portcullis";
pub const CONTROLLER_NAMESPACED_ROLE: &str = "portcullis-namespaced";

/// The chart's RBAC rules, relative to the repository root.
pub const CLUSTER_RULES: &str = "charts/portcullis/files/rbac/cluster-rules.yaml";
pub const NAMESPACED_RULES: &str = "charts/portcullis/files/rbac/namespaced-rules.yaml";
pub const OWN_NAMESPACE_RULES: &str = "charts/portcullis/files/rbac/own-namespace-rules.yaml";

const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Where the controller may read Ingresses, Secrets, Services and EndpointSlices: the
/// chart binds the namespaced rules cluster-wide, or per namespace with `--watch-namespace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rbac {
    AllNamespaces,
    /// Only where [`Cluster::grant_namespace`] was called.
    GrantedNamespaces,
}

/// etcd plus kube-apiserver, stopped when dropped (fields drop in order: API servers first,
/// then etcd, then the temp dir).
pub struct Cluster {
    apiserver: Option<Process>,
    etcd: Process,
    pub api_port: u16,
    etcd_url: String,
    ca: Ca,
    admin: Client,
    admin_kubeconfig: PathBuf,
    controller_kubeconfig: PathBuf,
    restarts: u32,
    dir: TempDir,
}

/// A second kube-apiserver on the same etcd (another port): lets a test change objects
/// while the controller's API server is down. Stopped when dropped.
pub struct SecondApiServer {
    pub client: Client,
    process: Process,
}

impl Cluster {
    /// Starts etcd and kube-apiserver and binds the chart's rules to the controller's
    /// identity, the namespaced ones cluster-wide. Takes about 2-3 s.
    pub async fn start() -> Cluster {
        Cluster::start_with(Rbac::AllNamespaces).await
    }

    pub async fn start_with(rbac: Rbac) -> Cluster {
        let started = Instant::now();
        let dir = TempDir::new();
        let path = |name: &str| dir.path().join(name);

        // Certificates: the cluster CA signs the serving certificate and both client
        // certificates; the service-account key pair only signs tokens.
        let ca = Ca::new("portcullis-e2e-cluster-ca");
        write(&path("ca.crt"), &ca.cert_pem());
        let serving = ca.server(&["127.0.0.1", "localhost"]);
        write(&path("apiserver.crt"), &serving.cert_pem);
        write(&path("apiserver.key"), &serving.key_pem);
        let admin = ca.client("portcullis-e2e-admin", Some("system:masters"));
        write(&path("admin.crt"), &admin.cert_pem);
        write(&path("admin.key"), &admin.key_pem);
        let controller_user =
            format!("system:serviceaccount:{CONTROLLER_SA_NAMESPACE}:{CONTROLLER_SA_NAME}");
        let controller = ca.client(&controller_user, None);
        write(&path("controller.crt"), &controller.cert_pem);
        write(&path("controller.key"), &controller.key_pem);
        let (sa_private, sa_public) = pki::key_pair_pem();
        write(&path("sa.key"), &sa_private);
        write(&path("sa.pub"), &sa_public);

        // etcd: one member, plain HTTP on loopback; test data needs no fsync.
        let etcd_client = free_port();
        let etcd_peer = free_port();
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let mut etcd = Process::spawn(
            "etcd",
            tools::etcd(),
            [
                "--name=portcullis-e2e".to_owned(),
                format!("--data-dir={}", path("etcd-data").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=portcullis-e2e={peer_url}"),
                "--unsafe-no-fsync".to_owned(),
                "--log-level=warn".to_owned(),
            ],
            &path("etcd.log"),
        );
        wait_for_etcd(&mut etcd, etcd_client).await;

        let api_port = free_port();
        let admin_kubeconfig = path("admin.kubeconfig");
        write_kubeconfig(&admin_kubeconfig, dir.path(), api_port, "admin");
        let controller_kubeconfig = path("controller.kubeconfig");
        write_kubeconfig(&controller_kubeconfig, dir.path(), api_port, "controller");
        let admin = client_from(&admin_kubeconfig).await;

        let apiserver = spawn_apiserver(dir.path(), api_port, &etcd_url, "kube-apiserver");
        let mut cluster = Cluster {
            apiserver: Some(apiserver),
            etcd,
            api_port,
            etcd_url,
            ca,
            admin,
            admin_kubeconfig,
            controller_kubeconfig,
            restarts: 0,
            dir,
        };
        cluster.wait_until_ready().await;
        cluster.grant_controller_cluster_roles(rbac).await;
        eprintln!(
            "API server ready on 127.0.0.1:{api_port} after {} ms",
            started.elapsed().as_millis()
        );
        cluster
    }

    /// A client with every permission (`system:masters`).
    pub fn admin(&self) -> Client {
        self.admin.clone()
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The kubeconfig the controller runs with: the restricted identity.
    pub fn controller_kubeconfig(&self) -> &Path {
        &self.controller_kubeconfig
    }

    /// A client for the controller's identity, to check what it may and may not do.
    pub async fn controller_client(&self) -> Client {
        client_from(&self.controller_kubeconfig).await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// Creates a namespace named `{prefix}-{random}` and returns its name.
    pub async fn create_namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", random_suffix());
        let namespace: Namespace =
            serde_json::from_value(json!({ "metadata": { "name": name } })).expect("namespace");
        Api::<Namespace>::all(self.admin())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        name
    }

    /// Binds the chart's own-namespace rules (leases, the publish Service) to the controller
    /// in `namespace`, its election namespace.
    pub async fn grant_election_namespace(&self, namespace: &str) {
        let rules = read_rules(&[OWN_NAMESPACE_RULES]);
        let role = Role {
            metadata: meta(CONTROLLER_ROLE, Some(namespace)),
            rules: Some(rules),
        };
        Api::<Role>::namespaced(self.admin(), namespace)
            .create(&PostParams::default(), &role)
            .await
            .unwrap_or_else(|e| panic!("create Role in {namespace}: {e}"));
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": { "name": CONTROLLER_ROLE, "namespace": namespace },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": CONTROLLER_ROLE },
            "subjects": [controller_subject()],
        }))
        .expect("role binding");
        Api::<RoleBinding>::namespaced(self.admin(), namespace)
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("create RoleBinding in {namespace}: {e}"));
    }

    /// Lets the controller read the namespaced kinds in `namespace` (with
    /// [`Rbac::GrantedNamespaces`]): a RoleBinding to the namespaced ClusterRole.
    pub async fn grant_namespace(&self, namespace: &str) {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": { "name": CONTROLLER_NAMESPACED_ROLE, "namespace": namespace },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": CONTROLLER_NAMESPACED_ROLE },
            "subjects": [controller_subject()],
        }))
        .expect("role binding");
        Api::<RoleBinding>::namespaced(self.admin(), namespace)
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("create RoleBinding in {namespace}: {e}"));
    }

    async fn grant_controller_cluster_roles(&self, rbac: Rbac) {
        self.create_cluster_role(CONTROLLER_ROLE, &[CLUSTER_RULES])
            .await;
        self.bind_cluster_role(CONTROLLER_ROLE).await;
        self.create_cluster_role(CONTROLLER_NAMESPACED_ROLE, &[NAMESPACED_RULES])
            .await;
        if rbac == Rbac::AllNamespaces {
            self.bind_cluster_role(CONTROLLER_NAMESPACED_ROLE).await;
        }
    }

    async fn create_cluster_role(&self, name: &str, rule_files: &[&str]) {
        let role = ClusterRole {
            metadata: meta(name, None),
            rules: Some(read_rules(rule_files)),
            ..Default::default()
        };
        Api::<ClusterRole>::all(self.admin())
            .create(&PostParams::default(), &role)
            .await
            .unwrap_or_else(|e| panic!("create ClusterRole {name}: {e}"));
    }

    async fn bind_cluster_role(&self, name: &str) {
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": { "name": name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": name },
            "subjects": [controller_subject()],
        }))
        .expect("cluster role binding");
        Api::<ClusterRoleBinding>::all(self.admin())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("create ClusterRoleBinding {name}: {e}"));
    }

    /// Kills kube-apiserver (etcd keeps running), as a crash or a partition would: every
    /// connection to it breaks at once. (On SIGTERM it would keep its watches open for
    /// several more seconds while refusing new connections.)
    pub fn kill_apiserver(&mut self) {
        if let Some(mut apiserver) = self.apiserver.take() {
            apiserver.kill();
        }
    }

    /// Starts kube-apiserver again on the same port with the same certificates.
    pub async fn restart_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "kill the API server first");
        self.restarts += 1;
        let name = format!("kube-apiserver-restart-{}", self.restarts);
        self.apiserver = Some(spawn_apiserver(
            self.dir.path(),
            self.api_port,
            &self.etcd_url,
            &name,
        ));
        self.wait_until_ready().await;
    }

    /// Starts another kube-apiserver on the same etcd, on its own port.
    pub async fn start_second_apiserver(&self) -> SecondApiServer {
        let port = free_port();
        let kubeconfig = self.dir.path().join("second-admin.kubeconfig");
        write_kubeconfig(&kubeconfig, self.dir.path(), port, "admin");
        let client = client_from(&kubeconfig).await;
        let mut process = spawn_apiserver(
            self.dir.path(),
            port,
            &self.etcd_url,
            "kube-apiserver-second",
        );
        wait_for_readyz(&client, &mut process).await;
        SecondApiServer { client, process }
    }

    async fn wait_until_ready(&mut self) {
        let apiserver = self.apiserver.as_mut().expect("API server started");
        wait_for_readyz(&self.admin, apiserver).await;
    }
}

impl SecondApiServer {
    pub fn stop(mut self) {
        self.process.terminate(Duration::from_secs(10));
    }
}

fn spawn_apiserver(dir: &Path, port: u16, etcd_url: &str, name: &str) -> Process {
    let file = |name: &str| dir.join(name).display().to_string();
    Process::spawn(
        name,
        tools::kube_apiserver(),
        [
            "--advertise-address=127.0.0.1".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--etcd-servers={etcd_url}"),
            format!("--client-ca-file={}", file("ca.crt")),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            // The lease reconciler refuses a loopback advertise address.
            "--endpoint-reconciler-type=none".to_owned(),
        ],
        &dir.join(format!("{name}.log")),
    )
}

async fn wait_for_etcd(etcd: &mut Process, port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    loop {
        etcd.assert_running();
        if let Ok(reply) = super::client::http_get(addr, "127.0.0.1", "/health").await
            && reply.status.is_success()
        {
            return;
        }
        assert!(
            start.elapsed() < ETCD_READY_TIMEOUT,
            "etcd not healthy after {ETCD_READY_TIMEOUT:?}:\n{}",
            etcd.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_readyz(client: &Client, apiserver: &mut Process) {
    let start = Instant::now();
    loop {
        apiserver.assert_running();
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .expect("request");
        let last = match client.request_text(request).await {
            Ok(text) if text.trim() == "ok" => return,
            Ok(text) => text,
            Err(error) => error.to_string(),
        };
        assert!(
            start.elapsed() < APISERVER_READY_TIMEOUT,
            "{} not ready after {APISERVER_READY_TIMEOUT:?} (last answer: {last}):\n{}",
            apiserver.name(),
            apiserver.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback port that was free a moment ago. Ports handed out once are never handed out
/// again by this process, so parallel tests do not race each other for one.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no fresh loopback port after 100 tries");
}

fn write_kubeconfig(path: &Path, dir: &Path, port: u16, user: &str) {
    let file = |name: &str| dir.join(name).display().to_string();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "e2e", "cluster": {
            "server": format!("https://127.0.0.1:{port}"),
            "certificate-authority": file("ca.crt"),
        }}],
        "users": [{ "name": user, "user": {
            "client-certificate": file(&format!("{user}.crt")),
            "client-key": file(&format!("{user}.key")),
        }}],
        "contexts": [{ "name": "e2e", "context": { "cluster": "e2e", "user": user } }],
        "current-context": "e2e",
    });
    // JSON is YAML: kubectl, kube-rs and the controller all read it.
    write(
        path,
        &serde_json::to_string_pretty(&config).expect("kubeconfig"),
    );
}

async fn client_from(kubeconfig: &Path) -> Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read {}: {e}", kubeconfig.display()));
    let config =
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("use {}: {e}", kubeconfig.display()));
    Client::try_from(config).expect("kube client")
}

/// Reads PolicyRule lists from the chart's rule files (each a YAML list, or a mapping with
/// a `rules:` list). Missing files fail the test: they are the chart's RBAC.
fn read_rules(files: &[&str]) -> Vec<PolicyRule> {
    #[derive(serde::Deserialize)]
    struct Wrapped {
        rules: Vec<PolicyRule>,
    }
    let mut all = Vec::new();
    for relative in files {
        let path = tools::repo_root().join(relative);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the chart's RBAC rules {}: {e} (the controller runs with exactly \
                 these permissions in the end-to-end tests)",
                path.display()
            )
        });
        let rules = serde_saphyr::from_str::<Vec<PolicyRule>>(&text)
            .or_else(|list_error| {
                serde_saphyr::from_str::<Wrapped>(&text)
                    .map(|w| w.rules)
                    .map_err(|_| list_error)
            })
            .unwrap_or_else(|e| panic!("{} is not a list of PolicyRules: {e}", path.display()));
        all.extend(rules);
    }
    all
}

fn controller_subject() -> serde_json::Value {
    json!({ "kind": "ServiceAccount", "namespace": CONTROLLER_SA_NAMESPACE,
            "name": CONTROLLER_SA_NAME })
}

fn meta(
    name: &str,
    namespace: Option<&str>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..Default::default()
    }
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
