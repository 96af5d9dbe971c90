//! Node configuration: a TOML file plus command-line overrides, validated into
//! the typed per-subsystem configs. Every error is one readable sentence.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use libp2p::{Multiaddr, multiaddr::Protocol};
use mass_protocol::BridgeInfo;
use serde::Deserialize;

use crate::{bridge, hardware, http, membership, net, storage};

/// Log filter when none is given: our info, libp2p's warnings, minus the DHT's
/// complaint that a lone first node has no peers to bootstrap from.
pub const DEFAULT_LOG: &str = "info,libp2p_kad=error,actix_server=warn";

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// `tracing` filter, e.g. "info,mass_node=debug"; `RUST_LOG` wins when set.
    pub log: String,
    pub net: net::Config,
    pub http: http::Config,
    pub membership: membership::Config,
    pub hardware: hardware::Config,
    pub storage: storage::Config,
    pub serving: crate::serving::Config,
    pub compute: crate::compute::Config,
    /// How the node uses the bridges declared under `hardware.bridges`.
    pub bridges: bridge::Config,
    /// Fault injection for tests: lie as a data-parallel worker. Set from
    /// `MASS_FAULT_BYZANTINE` by `mass node start`, never by the file.
    pub byzantine: Option<crate::jobs::byzantine::Lie>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no data directory given: pass --data-dir or set data_dir in the config file")]
    NoDataDir,
    #[error("{field}: '{value}' is not a valid multiaddr ({reason})")]
    BadMultiaddr { field: &'static str, value: String, reason: String },
    #[error("{field}: '{value}' has no /tcp/PORT part; Mass nodes speak TCP")]
    NotTcp { field: &'static str, value: String },
    #[error("{field}: '{value}' is not a socket address such as 127.0.0.1:8080 ({reason})")]
    BadSocketAddr { field: &'static str, value: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// The TOML file as written by a user. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub log: Option<String>,
    #[serde(default)]
    pub net: NetSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub membership: MembershipSection,
    #[serde(default)]
    pub hardware: HardwareSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub serving: ServingSection,
    #[serde(default)]
    pub compute: ComputeSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingSection {
    pub queue: Option<usize>,
    pub max_batch_rows: Option<usize>,
    #[serde(default, with = "humantime_serde::option")]
    pub batch_wait: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub deadline: Option<Duration>,
    pub replicas: Option<usize>,
    pub hot_after: Option<u32>,
    pub max_in_flight: Option<usize>,
    pub max_in_flight_mib: Option<usize>,
    pub scoring_parallel: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub replication: Option<usize>,
    #[serde(default, with = "humantime_serde::option")]
    pub repair_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub gc_grace: Option<Duration>,
    pub threads: Option<usize>,
    pub shard_rows: Option<usize>,
    /// Peer ids whose nodes alone may delete refs and unpin blobs.
    pub ref_admins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSection {
    pub listen: Option<Vec<String>>,
    pub bootstrap: Option<Vec<String>>,
    pub network_key: Option<PathBuf>,
    pub mdns: Option<bool>,
    #[serde(default, with = "humantime_serde::option")]
    pub bootstrap_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub ping_interval: Option<Duration>,
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    pub max_pending_incoming: Option<usize>,
    pub max_pending_outgoing: Option<usize>,
    pub max_inbound_requests: Option<usize>,
    pub max_inbound_requests_per_peer: Option<usize>,
    pub dht_max_provider_keys: Option<usize>,
    pub dht_max_providers_per_key: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: Option<String>,
    pub max_upload: Option<u64>,
    /// Trials a study submitted through this node may ask for, at most.
    pub max_trials: Option<usize>,
    /// PEM certificate chain: with `tls_key`, the API is served over HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Address of the gRPC prediction service; off when unset.
    pub grpc: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipSection {
    #[serde(default, with = "humantime_serde::option")]
    pub advert_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub down_after: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    pub forget_after: Option<Duration>,
    pub max_peers: Option<usize>,
    #[serde(default, with = "humantime_serde::option")]
    pub drain_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeSection {
    pub slots: Option<usize>,
    pub serving_slots: Option<usize>,
    pub queue: Option<usize>,
    pub throttle: Option<f64>,
    /// "auto" (default), "off" or "always".
    pub gpu: Option<crate::hardware::GpuUse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareSection {
    pub gemm_size: Option<usize>,
    #[serde(default, with = "humantime_serde::option")]
    pub gemm_budget: Option<Duration>,
    pub probe_gpus: Option<bool>,
    #[serde(default)]
    pub bridges: Vec<BridgeSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    pub name: String,
    pub kind: String,
    pub endpoint: String,
    pub route: Option<bridge::Route>,
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    pub max_drift: Option<f64>,
}

/// Values given on the command line; each one beats the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Vec<String>,
    pub http: Option<String>,
    pub grpc: Option<String>,
    pub bootstrap: Vec<String>,
    pub network_key: Option<PathBuf>,
    pub mdns: Option<bool>,
    pub log: Option<String>,
}

impl FileConfig {
    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string().trim().replace('\n', " ") })
    }
}

impl NodeConfig {
    /// Merges the file and the overrides, applies defaults and validates.
    pub fn resolve(file: FileConfig, cli: Overrides) -> Result<Self, ConfigError> {
        let data_dir = cli.data_dir.or(file.data_dir).ok_or(ConfigError::NoDataDir)?;

        let listen_text = if cli.listen.is_empty() {
            file.net.listen.unwrap_or_else(|| vec![net::DEFAULT_LISTEN.to_owned()])
        } else {
            cli.listen
        };
        if listen_text.is_empty() {
            return Err(ConfigError::Invalid(
                "net.listen is empty: a node needs at least one address to listen on".into(),
            ));
        }
        let listen =
            listen_text.iter().map(|text| parse_tcp_multiaddr("listen", text)).collect::<Result<Vec<_>, _>>()?;
        let bootstrap_text =
            if cli.bootstrap.is_empty() { file.net.bootstrap.unwrap_or_default() } else { cli.bootstrap };
        let bootstrap =
            bootstrap_text.iter().map(|text| parse_tcp_multiaddr("bootstrap", text)).collect::<Result<Vec<_>, _>>()?;

        let http_text = cli.http.or(file.http.listen).unwrap_or_else(|| http::DEFAULT_LISTEN.to_owned());
        let http_listen = http_text.parse::<SocketAddr>().map_err(|e| ConfigError::BadSocketAddr {
            field: "http",
            value: http_text.clone(),
            reason: e.to_string(),
        })?;

        let grpc = cli
            .grpc
            .or(file.http.grpc)
            .map(|text| {
                text.parse::<SocketAddr>().map_err(|e| ConfigError::BadSocketAddr {
                    field: "grpc",
                    value: text.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;

        let membership = membership::Config {
            advert_interval: file.membership.advert_interval.unwrap_or(membership::Config::DEFAULT.advert_interval),
            down_after: file.membership.down_after.unwrap_or(membership::Config::DEFAULT.down_after),
            forget_after: file.membership.forget_after.unwrap_or(membership::Config::DEFAULT.forget_after),
            max_peers: file.membership.max_peers.unwrap_or(membership::Config::DEFAULT.max_peers),
            drain_timeout: file.membership.drain_timeout.unwrap_or(membership::Config::DEFAULT.drain_timeout),
        };
        membership.validate().map_err(ConfigError::Invalid)?;

        let net = net::Config {
            listen,
            bootstrap,
            network_key: cli.network_key.or(file.net.network_key),
            mdns: cli.mdns.or(file.net.mdns).unwrap_or(true),
            bootstrap_timeout: file.net.bootstrap_timeout.unwrap_or(net::Config::DEFAULT_BOOTSTRAP_TIMEOUT),
            ping_interval: file.net.ping_interval.unwrap_or(net::Config::DEFAULT_PING_INTERVAL),
            max_connections: file.net.max_connections.unwrap_or(net::Config::DEFAULT_MAX_CONNECTIONS),
            max_connections_per_peer: file
                .net
                .max_connections_per_peer
                .unwrap_or(net::Config::DEFAULT_MAX_CONNECTIONS_PER_PEER),
            max_pending_incoming: file.net.max_pending_incoming.unwrap_or(net::Config::DEFAULT_MAX_PENDING_INCOMING),
            max_pending_outgoing: file.net.max_pending_outgoing.unwrap_or(net::Config::DEFAULT_MAX_PENDING_OUTGOING),
            max_inbound_requests: file.net.max_inbound_requests.unwrap_or(net::Config::DEFAULT_MAX_INBOUND_REQUESTS),
            max_inbound_requests_per_peer: file
                .net
                .max_inbound_requests_per_peer
                .unwrap_or(net::Config::DEFAULT_MAX_INBOUND_REQUESTS_PER_PEER),
            dht_max_provider_keys: file.net.dht_max_provider_keys.unwrap_or(net::Config::DEFAULT_DHT_MAX_PROVIDER_KEYS),
            dht_max_providers_per_key: file
                .net
                .dht_max_providers_per_key
                .unwrap_or(net::Config::DEFAULT_DHT_MAX_PROVIDERS_PER_KEY),
        };
        net.validate().map_err(ConfigError::Invalid)?;

        let hardware = hardware::Config {
            gemm_size: file.hardware.gemm_size.unwrap_or(hardware::Config::DEFAULT_GEMM_SIZE),
            gemm_budget: file.hardware.gemm_budget.unwrap_or(hardware::Config::DEFAULT_GEMM_BUDGET),
            probe_gpus: file.hardware.probe_gpus.unwrap_or(true),
            bridges: file
                .hardware
                .bridges
                .iter()
                .map(|b| BridgeInfo::declared(&b.name, &b.kind, &b.endpoint))
                .collect(),
        };
        hardware.validate().map_err(ConfigError::Invalid)?;
        let bridges = bridge::Config {
            bridges: file
                .hardware
                .bridges
                .into_iter()
                .map(|b| bridge::Settings {
                    name: b.name,
                    kind: b.kind,
                    endpoint: b.endpoint,
                    route: b.route.unwrap_or(bridge::Route::WhenFaster),
                    timeout: b.timeout.unwrap_or(bridge::Settings::DEFAULT_TIMEOUT),
                    max_drift: b.max_drift.unwrap_or(bridge::Settings::DEFAULT_MAX_DRIFT),
                })
                .collect(),
        };
        bridges.validate().map_err(ConfigError::Invalid)?;

        let defaults = storage::Config::DEFAULT;
        let storage = storage::Config {
            replication: file.storage.replication.unwrap_or(defaults.replication),
            repair_interval: file.storage.repair_interval.unwrap_or(defaults.repair_interval),
            gc_grace: file.storage.gc_grace.unwrap_or(defaults.gc_grace),
            threads: file.storage.threads.unwrap_or(defaults.threads),
            shard_rows: file.storage.shard_rows.unwrap_or(defaults.shard_rows),
            ref_admins: file.storage.ref_admins.unwrap_or_default(),
        };
        for admin in &storage.ref_admins {
            admin
                .parse::<libp2p::PeerId>()
                .map_err(|e| ConfigError::Invalid(format!("storage.ref_admins: '{admin}' is not a peer id ({e})")))?;
        }
        storage.validate().map_err(ConfigError::Invalid)?;

        let defaults = crate::serving::Config::DEFAULT;
        let serving = crate::serving::Config {
            queue: file.serving.queue.unwrap_or(defaults.queue),
            max_batch_rows: file.serving.max_batch_rows.unwrap_or(defaults.max_batch_rows),
            batch_wait: file.serving.batch_wait.unwrap_or(defaults.batch_wait),
            deadline: file.serving.deadline.unwrap_or(defaults.deadline),
            replicas: file.serving.replicas.unwrap_or(storage.replication),
            hot_after: file.serving.hot_after.unwrap_or(defaults.hot_after),
            max_in_flight: file.serving.max_in_flight.unwrap_or(defaults.max_in_flight),
            max_in_flight_mib: file.serving.max_in_flight_mib.unwrap_or(defaults.max_in_flight_mib),
            scoring_parallel: file.serving.scoring_parallel.unwrap_or(defaults.scoring_parallel),
        };
        serving.validate().map_err(ConfigError::Invalid)?;
        bridges.fits_deadline(serving.deadline).map_err(ConfigError::Invalid)?;

        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let defaults = crate::compute::Config::for_cores(cores);
        let compute = crate::compute::Config {
            slots: file.compute.slots.unwrap_or(defaults.slots),
            serving_slots: file.compute.serving_slots.unwrap_or(defaults.serving_slots),
            queue: file.compute.queue.unwrap_or(defaults.queue),
            throttle: file.compute.throttle.unwrap_or(defaults.throttle),
            gpu: file.compute.gpu.unwrap_or(defaults.gpu),
        };
        compute.validate().map_err(ConfigError::Invalid)?;

        let max_upload = file.http.max_upload.unwrap_or(http::DEFAULT_MAX_UPLOAD);
        if max_upload < 1 << 20 {
            return Err(ConfigError::Invalid(format!(
                "http.max_upload must be at least 1048576 bytes, not {max_upload}"
            )));
        }

        let max_trials = file.http.max_trials.unwrap_or(http::DEFAULT_MAX_TRIALS);
        if max_trials == 0 || max_trials > mass_protocol::studies::MAX_TRIALS {
            // Journals with more trials are refused on read.
            return Err(ConfigError::Invalid(format!(
                "http.max_trials must be 1 to {}",
                mass_protocol::studies::MAX_TRIALS
            )));
        }

        let tls = match (file.http.tls_cert, file.http.tls_key) {
            (Some(cert), Some(key)) => Some(http::TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::Invalid("http.tls_cert is set without http.tls_key".into())),
            (None, Some(_)) => return Err(ConfigError::Invalid("http.tls_key is set without http.tls_cert".into())),
        };

        Ok(Self {
            data_dir,
            storage,
            serving,
            compute,
            log: cli.log.or(file.log).unwrap_or_else(|| DEFAULT_LOG.to_owned()),
            net,
            http: http::Config { listen: http_listen, max_upload, max_trials, tls, grpc },
            membership,
            hardware,
            bridges,
            byzantine: None,
        })
    }
}

/// Parses a multiaddr that must reach a TCP port.
pub fn parse_tcp_multiaddr(field: &'static str, text: &str) -> Result<Multiaddr, ConfigError> {
    let addr: Multiaddr = text.trim().parse().map_err(|e: libp2p::multiaddr::Error| ConfigError::BadMultiaddr {
        field,
        value: text.to_owned(),
        reason: e.to_string(),
    })?;
    if !addr.iter().any(|p| matches!(p, Protocol::Tcp(_))) {
        return Err(ConfigError::NotTcp { field, value: text.to_owned() });
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml: &str, cli: Overrides) -> Result<NodeConfig, ConfigError> {
        NodeConfig::resolve(FileConfig::parse(toml, Path::new("test.toml"))?, cli)
    }

    fn with_dir() -> Overrides {
        Overrides { data_dir: Some("/tmp/x".into()), ..Default::default() }
    }

    #[test]
    fn defaults_apply_when_file_is_empty() {
        let config = resolve("", with_dir()).unwrap();
        assert_eq!(config.net.listen[0].to_string(), net::DEFAULT_LISTEN);
        assert_eq!(config.http.listen.to_string(), http::DEFAULT_LISTEN);
        assert!(config.net.mdns);
    }

    #[test]
    fn cli_beats_file() {
        let toml = "data_dir = \"/from/file\"\n[http]\nlisten = \"127.0.0.1:1\"\n";
        let cli = Overrides { http: Some("127.0.0.1:2".into()), ..with_dir() };
        let config = resolve(toml, cli).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.http.listen.port(), 2);
        assert_eq!(config.http.grpc, None, "gRPC is off unless asked for");
        let config = resolve(toml, Overrides { grpc: Some("127.0.0.1:3".into()), ..with_dir() }).unwrap();
        assert_eq!(config.http.grpc.map(|a| a.port()), Some(3));
    }

    #[test]
    fn gpu_use_is_auto_unless_switched_off_or_forced() {
        use crate::hardware::GpuUse;
        assert_eq!(resolve("", with_dir()).unwrap().compute.gpu, GpuUse::Auto);
        assert_eq!(resolve("[compute]\ngpu = \"off\"\n", with_dir()).unwrap().compute.gpu, GpuUse::Off);
        assert_eq!(resolve("[compute]\ngpu = \"always\"\n", with_dir()).unwrap().compute.gpu, GpuUse::Always);
        let refused = resolve("[compute]\ngpu = \"sometimes\"\n", with_dir()).unwrap_err().to_string();
        assert!(refused.contains("sometimes") || refused.contains("unknown variant"), "{refused}");
    }

    #[test]
    fn serving_slots_default_to_one_and_are_bounded() {
        assert_eq!(resolve("", with_dir()).unwrap().compute.serving_slots, 1);
        assert_eq!(resolve("[compute]\nserving_slots = 0\n", with_dir()).unwrap().compute.serving_slots, 0);
        let refused = resolve("[compute]\nserving_slots = 65\n", with_dir()).unwrap_err().to_string();
        assert!(refused.contains("compute.serving_slots must be 0-64, not 65"), "{refused}");
    }

    #[test]
    fn ref_admins_must_be_peer_ids() {
        let admin = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id().to_string();
        let config = resolve(&format!("[storage]\nref_admins = [\"{admin}\"]\n"), with_dir()).unwrap();
        assert_eq!(config.storage.ref_admins, vec![admin]);
        let refused = resolve("[storage]\nref_admins = [\"root\"]\n", with_dir()).unwrap_err().to_string();
        assert!(refused.contains("storage.ref_admins: 'root' is not a peer id"), "{refused}");
    }

    #[test]
    fn durations_read_as_human_text() {
        let toml = "[membership]\nadvert_interval = \"500ms\"\ndown_after = \"3s\"\nforget_after = \"1m\"\n";
        let config = resolve(toml, with_dir()).unwrap();
        assert_eq!(config.membership.down_after, Duration::from_secs(3));
    }

    #[test]
    fn bridges_take_defaults_and_their_keys() {
        let toml = "[[hardware.bridges]]\nname = \"fpga0\"\nkind = \"fpga\"\nendpoint = \"tcp://10.0.0.9:7000\"\n\
                    [[hardware.bridges]]\nname = \"fpga1\"\nkind = \"fpga\"\nendpoint = \"127.0.0.1:7001\"\n\
                    route = \"always\"\ntimeout = \"400ms\"\nmax_drift = 0.05\n";
        let config = resolve(toml, with_dir()).unwrap();
        let [first, second] = &config.bridges.bridges[..] else { panic!("two bridges") };
        assert_eq!(
            (first.route, first.timeout, first.max_drift),
            (bridge::Route::WhenFaster, bridge::Settings::DEFAULT_TIMEOUT, bridge::Settings::DEFAULT_MAX_DRIFT)
        );
        assert_eq!(
            (second.route, second.timeout, second.max_drift),
            (bridge::Route::Always, Duration::from_millis(400), 0.05)
        );
        assert_eq!(config.hardware.bridges[1], BridgeInfo::declared("fpga1", "fpga", "127.0.0.1:7001"));
    }

    #[test]
    fn errors_are_sentences_naming_the_problem() {
        let cases: &[(&str, Overrides, &str)] = &[
            ("", Overrides::default(), "no data directory"),
            ("[net]\nlisten = [\"nonsense\"]\n", with_dir(), "'nonsense' is not a valid multiaddr"),
            ("[net]\nlisten = [\"/ip4/127.0.0.1/udp/1\"]\n", with_dir(), "no /tcp/PORT"),
            ("[http]\nlisten = \"localhost\"\n", with_dir(), "'localhost' is not a socket address"),
            ("[net]\nlistne = []\n", with_dir(), "unknown field `listne`"),
            ("[membership]\nadvert_interval = \"5s\"\ndown_after = \"2s\"\n", with_dir(), "down_after"),
            ("[membership]\nadvert_interval = \"five\"\n", with_dir(), "advert_interval"),
            ("[hardware]\ngemm_size = 0\n", with_dir(), "gemm_size"),
            ("[storage]\nreplication = 0\n", with_dir(), "storage.replication"),
            ("[serving]\nmax_in_flight_mib = 1\n", with_dir(), "max_in_flight_mib 16 to 1048576"),
            (
                "[[hardware.bridges]]\nname = \"f\"\nkind = \"fpga\"\nendpoint = \"https://x:1\"\n",
                with_dir(),
                "hardware.bridges[0].endpoint: 'https://x:1': the bridge protocol runs over tcp:// or http://",
            ),
            (
                "[[hardware.bridges]]\nname = \"f\"\nkind = \"fpga\"\nendpoint = \"tcp://h:1\"\ntimeout = \"1ms\"\n",
                with_dir(),
                "hardware.bridges[0].timeout must be between 10ms and 10s",
            ),
            (
                "[serving]\ndeadline = \"1s\"\n[[hardware.bridges]]\nname = \"f\"\nkind = \"fpga\"\nendpoint = \"tcp://h:1\"\ntimeout = \"500ms\"\n",
                with_dir(),
                "hardware.bridges[0].timeout (500ms) must be under half of serving.deadline (1s)",
            ),
            (
                "[[hardware.bridges]]\nname = \"f\"\nkind = \"fpga\"\nendpoint = \"tcp://h:1\"\nmax_drift = -1\n",
                with_dir(),
                "hardware.bridges[0].max_drift must be a positive number",
            ),
            (
                "[[hardware.bridges]]\nname = \"f\"\nkind = \"fpga\"\nendpoint = \"tcp://h:1\"\nroute = \"sometimes\"\n",
                with_dir(),
                "unknown variant `sometimes`",
            ),
            (
                "[[hardware.bridges]]\nname = \"f\"\nkind = \"fpga\"\nendpoint = \"tcp://h:1\"\n[[hardware.bridges]]\nname = \"f\"\nkind = \"fpga\"\nendpoint = \"tcp://h:2\"\n",
                with_dir(),
                "'f' is declared twice",
            ),
            (
                "[net]\nmax_inbound_requests_per_peer = 0\n",
                with_dir(),
                "net.max_inbound_requests_per_peer must be at least 1",
            ),
            (
                "[net]\nmax_inbound_requests = 8\nmax_inbound_requests_per_peer = 16\n",
                with_dir(),
                "must not exceed net.max_inbound_requests",
            ),
            ("[net]\nmax_connections = 2\n", with_dir(), "net.max_connections_per_peer (4) must not exceed"),
            ("[net]\nmax_pending_incoming = 0\n", with_dir(), "net.max_pending_incoming"),
            ("[net]\ndht_max_provider_keys = 0\n", with_dir(), "net.dht_max_provider_keys"),
            ("[membership]\nmax_peers = 0\n", with_dir(), "membership.max_peers"),
            ("data_dir = [", with_dir(), "test.toml is invalid"),
        ];
        for (toml, cli, expected) in cases {
            let err = resolve(toml, cli.clone()).unwrap_err().to_string();
            assert!(err.contains(expected), "for {toml:?}: '{err}' lacks '{expected}'");
        }
    }
}
