//! The model registry: `model/<name>` refs, their versions (distinct
//! manifests in order of first publication), promotion and rollback.

use mass_protocol::{
    ContentId,
    serving::{ModelSummary, ModelVersion, versions_of},
};

use crate::{jobs::MODEL_PREFIX, mesh::Mesh};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

/// The versions of model `name`, and the one served now.
pub async fn versions(mesh: &Mesh, name: &str) -> Result<(Vec<ModelVersion>, ModelVersion), RegistryError> {
    let record =
        crate::shared_refs::find(mesh, &format!("{MODEL_PREFIX}{name}")).await.map_err(RegistryError::Unavailable)?;
    let unknown = || RegistryError::NotFound(format!("no model named '{name}'"));
    let record = record.ok_or_else(unknown)?;
    let target = record.current().and_then(|c| c.target).ok_or_else(unknown)?;
    let versions = versions_of(&record.history);
    let current = versions.iter().find(|v| v.manifest == target).cloned().expect("the current target is a version");
    Ok((versions, current))
}

/// The manifest id and version number served now.
pub async fn current(mesh: &Mesh, name: &str) -> Result<(ContentId, u64), RegistryError> {
    let (_, current) = versions(mesh, name).await?;
    Ok((current.manifest, current.version))
}

/// Serves `version` of `name` from now on, on every node.
pub async fn promote(mesh: &Mesh, name: &str, version: u64) -> Result<ModelVersion, RegistryError> {
    let (versions, current) = versions(mesh, name).await?;
    let Some(chosen) = versions.iter().find(|v| v.version == version) else {
        return Err(RegistryError::NotFound(format!(
            "model '{name}' has no version {version} (versions 1 to {})",
            versions.len()
        )));
    };
    if chosen.manifest != current.manifest {
        mesh.write_ref(format!("{MODEL_PREFIX}{name}"), Some(chosen.manifest))
            .await
            .map_err(|e| RegistryError::Unavailable(e.to_string()))?;
    }
    Ok(chosen.clone())
}

/// Serves the version before the current one.
pub async fn rollback(mesh: &Mesh, name: &str) -> Result<ModelVersion, RegistryError> {
    let (_, current) = versions(mesh, name).await?;
    if current.version <= 1 {
        return Err(RegistryError::Conflict(format!(
            "model '{name}' is at version 1; there is nothing to roll back to"
        )));
    }
    promote(mesh, name, current.version - 1).await
}

/// Every model this node knows, with the version served now.
pub async fn list(mesh: &Mesh) -> Result<Vec<ModelSummary>, RegistryError> {
    let refs = mesh.storage.refs().await.map_err(|e| RegistryError::Unavailable(e.to_string()))?;
    let mut out = Vec::new();
    for record in refs.iter().filter(|r| r.name.starts_with(MODEL_PREFIX)) {
        let Some(target) = record.current().and_then(|c| c.target) else { continue };
        let versions = versions_of(&record.history);
        let version = versions.iter().find(|v| v.manifest == target).map_or(0, |v| v.version);
        let evaluation = mesh.load_model(target).await.ok().map(|m| m.evaluation);
        let accuracy = evaluation.as_ref().and_then(|e| e.accuracy);
        let r2 = evaluation.as_ref().and_then(|e| e.r2);
        let name = record.name[MODEL_PREFIX.len()..].to_owned();
        out.push(ModelSummary { name, version, manifest: target, versions: versions.len(), accuracy, r2 });
    }
    Ok(out)
}
