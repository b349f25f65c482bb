//! The broker's shared state: its config, the metadata controller and the replica manager.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;
use weir_meta::{Controller, CreateTopic, MetaError, MetadataImage};

use crate::config::BrokerConfig;
use crate::group::{GroupManager, OFFSETS_TOPIC};
use crate::replica_manager::ReplicaManager;

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub bound: SocketAddr,
    controller: Mutex<Controller>,
    pub replicas: ReplicaManager,
    pub(crate) groups: GroupManager,
}

/// Reads or creates `<data>/meta.properties` with the cluster id, as Kafka's storage format does.
fn cluster_id(config: &BrokerConfig) -> std::io::Result<String> {
    use std::io::Write;
    let path = config.log_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("cluster.id=")) {
            return Ok(id.trim().to_string());
        }
    }
    let id = Uuid::new_v4().simple().to_string()[..22].to_string();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("version=1\ncluster.id={id}\nnode.id={}\n", config.node_id).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, path)?;
    Ok(id)
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    #[error("partition logs: {0}")]
    Log(#[from] weir_log::LogError),
}

impl Broker {
    pub fn open(config: BrokerConfig, bound: SocketAddr) -> Result<Arc<Broker>, StartError> {
        let dir_err = |source| StartError::DataDir {
            dir: config.log_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&config.log_dir).map_err(dir_err)?;
        let cluster_id = cluster_id(&config).map_err(dir_err)?;
        let mut controller = Controller::open(&config.log_dir.join("meta"))?;
        controller.register_broker(
            config.node_id,
            &config.advertised_host(),
            i32::from(config.advertised_port(bound)),
            config.rack.clone(),
        )?;
        let replicas = ReplicaManager::new(&config.log_dir, config.node_id);
        replicas.sync(controller.image(), &config.topic_defaults)?;
        let groups = GroupManager::new(&config);
        let broker = Arc::new(Broker {
            config,
            cluster_id,
            bound,
            controller: Mutex::new(controller),
            replicas,
            groups,
        });
        // Groups and offsets come back with the broker, not with the first group request.
        if broker.image().topic(OFFSETS_TOPIC).is_some()
            && broker.groups.ensure_ready(&broker).is_err()
        {
            tracing::error!("could not load consumer groups from {OFFSETS_TOPIC}");
        }
        Ok(broker)
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    fn controller(&self) -> MutexGuard<'_, Controller> {
        self.controller.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the current metadata image.
    pub fn image(&self) -> MetadataImage {
        self.controller().image().clone()
    }

    pub fn topic_defaults(&self) -> &BTreeMap<String, String> {
        &self.config.topic_defaults
    }

    /// Runs a metadata change and then brings the hosted partitions in line with the new image.
    pub fn change_metadata<T>(
        &self,
        f: impl FnOnce(&mut Controller) -> Result<T, MetaError>,
    ) -> Result<T, MetaError> {
        let mut controller = self.controller();
        let before = controller.image().applied;
        let out = f(&mut controller)?;
        if controller.image().applied != before {
            if let Err(e) = self
                .replicas
                .sync(controller.image(), &self.config.topic_defaults)
            {
                tracing::error!(error = %e, "applying a metadata change to the partition logs failed");
                return Err(MetaError::Io(std::io::Error::other(e.to_string())));
            }
        }
        Ok(out)
    }

    pub fn create_topic(
        &self,
        request: &CreateTopic,
        validate_only: bool,
    ) -> Result<Uuid, MetaError> {
        let partitions = self.config.num_partitions;
        let rf = self.config.default_replication_factor;
        self.change_metadata(|c| c.create_topic(request, partitions, rf, validate_only))
    }
}
