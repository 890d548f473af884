//! The `stele` command line: where the configuration file is and the few
//! settings worth changing without editing it. Flags win over the file; the
//! result is checked as a whole again ([`Cli::load_config`]), so a flag cannot
//! produce a configuration the file itself could not.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::config::{self, AdvertisedListener, Config, ConfigError, ConfigOverrides};

/// Stele: a Kafka-compatible broker, one shard per core.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "stele",
    version,
    about = "Stele: a Kafka-compatible broker, one shard per core",
    long_about = "Stele: a Kafka-compatible broker, one shard per core.\n\n\
                  Settings come from the built-in defaults, then the file given with --config, then these \
                  flags. Without --config the built-in defaults are used: listen and advertise \
                  127.0.0.1:9092, keep data in ./stele-data, run one shard per available core. Every key of \
                  the file is described in docs/configuration.md; stele.toml at the repository root spells \
                  out the defaults."
)]
pub struct Cli {
    /// TOML configuration file (default: none, the built-in defaults).
    ///
    /// Unknown keys and bad values are errors naming the key. See docs/configuration.md.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:9092; file: network.listen].
    ///
    /// Every shard binds it (SO_REUSEPORT). Use 0.0.0.0:9092 to accept connections on all
    /// interfaces; that needs --advertised-listener, since clients cannot connect to 0.0.0.0.
    /// Unless the file or --advertised-listener says otherwise, this address is also the one
    /// advertised to clients.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,

    /// Address given to clients in Metadata [default: the listen address; file:
    /// network.advertised_listener].
    ///
    /// Clients connect to the bootstrap address, then to this one: it must be reachable from
    /// them. A host name or an IP address; Kafka's PLAINTEXT://HOST:PORT form is accepted too.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised_listener: Option<AdvertisedListener>,

    /// Directory of all partition logs and metadata [default: ./stele-data; file: data_dir].
    ///
    /// Kafka: log.dirs.
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,

    /// Shards (executors, one per core) [default: 0 = one per available core; file: shards].
    ///
    /// Each shard owns its partitions and serves connections on its core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=config::SHARDS_MAX as i64))]
    pub shards: Option<u16>,

    /// This broker's node id in Metadata [default: 1; file: node_id]. Kafka: node.id.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    pub node_id: Option<i32>,

    /// Log filter [default: info; file: log_level]; RUST_LOG, when set, wins.
    ///
    /// A level (off, error, warn, info, debug, trace) or a tracing EnvFilter directive such as
    /// "info,broker=debug".
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,

    /// Touch each shard's memory budgets at startup [default: true; file:
    /// shard.prefault_memory].
    ///
    /// Startup takes longer and the broker is resident at its budgets from the start, but
    /// the first minutes under load do not pay for the kernel mapping fresh pages.
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    pub prefault_memory: Option<bool>,
}

impl Cli {
    /// Loads the file given with `--config` (or the built-in defaults), lays
    /// the flags over it and checks the result.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        Config::load_with(self.config.as_deref(), &self.overrides())
    }

    /// The flags as overrides of the file.
    pub fn overrides(&self) -> ConfigOverrides {
        ConfigOverrides {
            node_id: self.node_id,
            data_dir: self.data_dir.clone(),
            shards: self.shards.map(usize::from),
            log_level: self.log_level.clone(),
            listen: self.listen,
            advertised_listener: self.advertised_listener.clone(),
            prefault_memory: self.prefault_memory,
        }
    }
}

fn parse_log_level(text: &str) -> Result<String, String> {
    config::validate_log_level(text).map(|()| text.to_string())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("stele").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn no_flags_give_the_built_in_defaults() {
        // Proves: `stele` alone runs with the built-in defaults.
        assert_eq!(cli(&[]).load_config().unwrap(), Config::load(None).unwrap());
    }

    #[test]
    fn flags_override_the_file() {
        // Proves: each flag replaces the file's value and the rest of the
        // file still applies.
        let file = config_file(
            "node_id = 2\nshards = 4\ndata_dir = \"/from/file\"\nlog_level = \"warn\"\n\
             [network]\nlisten = \"127.0.0.1:1000\"\nrequest_bytes_max = 2048\n",
        );
        let path = file.path().to_str().unwrap();
        let config = cli(&[
            "--config",
            path,
            "--node-id",
            "9",
            "--shards",
            "2",
            "--data-dir",
            "/from/flag",
            "--log-level",
            "debug",
            "--listen",
            "127.0.0.2:2000",
            "--advertised-listener",
            "broker.example.com:3000",
            "--prefault-memory",
            "false",
        ])
        .load_config()
        .unwrap();
        assert_eq!(config.node_id, 9);
        assert_eq!(config.shards, 2);
        assert_eq!(config.shard_limits.len(), 2);
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.log_level, "debug");
        assert_eq!(config.listen, "127.0.0.2:2000".parse().unwrap());
        assert_eq!((config.advertised_host.as_str(), config.advertised_port), ("broker.example.com", 3000));
        assert_eq!(config.request_bytes_max, 2048);
        assert!(!config.prefault_memory);
    }

    #[test]
    fn listen_flag_is_advertised_unless_an_advertised_listener_is_set() {
        // Proves: --listen alone is also advertised, but an advertised
        // listener from the file is kept.
        let config = cli(&["--listen", "127.0.0.3:9999"]).load_config().unwrap();
        assert_eq!((config.advertised_host.as_str(), config.advertised_port), ("127.0.0.3", 9999));

        let file = config_file("[network]\nadvertised_listener = \"kafka.internal:9092\"\n");
        let config =
            cli(&["--config", file.path().to_str().unwrap(), "--listen", "0.0.0.0:9999"]).load_config().unwrap();
        assert_eq!((config.advertised_host.as_str(), config.advertised_port), ("kafka.internal", 9092));
    }

    #[test]
    fn flags_are_checked_with_the_file() {
        // Proves: the combination is validated again: a wildcard --listen needs
        // an advertised listener, and --shards must cover the file's per-shard
        // overrides; malformed flag values are refused by the parser.
        let message = cli(&["--listen", "0.0.0.0:9092"]).load_config().unwrap_err().to_string();
        assert!(message.contains("advertised_listener"), "{message}");

        let file = config_file("shards = 4\n[shard.overrides.3]\nio_depth = 8\n");
        let message =
            cli(&["--config", file.path().to_str().unwrap(), "--shards", "2"]).load_config().unwrap_err().to_string();
        assert!(message.contains("`shard.overrides.3`"), "{message}");

        for args in [
            ["--listen", "localhost"],
            ["--advertised-listener", "nohost"],
            ["--shards", "5000"],
            ["--node-id", "-1"],
            ["--log-level", "loud"],
            ["--prefault-memory", "yes"],
        ] {
            assert!(Cli::try_parse_from(std::iter::once("stele").chain(args)).is_err(), "{args:?}");
        }
    }

    #[test]
    fn missing_config_file_names_the_path() {
        // Proves: an unreadable --config file is an error naming it.
        let message = cli(&["--config", "/nonexistent/stele.toml"]).load_config().unwrap_err().to_string();
        assert!(message.starts_with("/nonexistent/stele.toml: cannot read"), "{message}");
    }

    #[test]
    fn help_mentions_the_defaults() {
        // Proves: `stele --help` tells the operator the defaults.
        let help = <Cli as clap::CommandFactory>::command().render_long_help().to_string();
        for text in ["127.0.0.1:9092", "./stele-data", "one per available core", "RUST_LOG"] {
            assert!(help.contains(text), "help lacks {text}:\n{help}");
        }
    }
}
