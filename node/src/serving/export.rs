//! Models leaving the mesh: a version of a registered model written as
//! safetensors or ONNX ([`mass_kernels::formats`]). Trained models whose
//! members are dense networks export to both; boosted trees to ONNX only
//! (safetensors is a file of weight tensors, and a tree is not one). A
//! composition, int8 members or a stacked ensemble is refused by name.

use mass_kernels::{
    formats::{self, Model, Networks, Part},
    models::Member,
};
use mass_protocol::{
    ContentId,
    serving::{ExportFormat, ModelVersion},
};

use super::{registry, router::ServeError};
use crate::mesh::Mesh;

/// A model version in a format.
#[derive(Debug)]
pub struct Exported {
    pub bytes: Vec<u8>,
    pub version: ModelVersion,
}

/// Writes `version` (default: the one served now) of model `name` in `format`.
pub async fn export(
    mesh: &Mesh,
    name: &str,
    version: Option<u64>,
    format: ExportFormat,
) -> Result<Exported, ServeError> {
    let (versions, current) = registry::versions(mesh, name).await?;
    let chosen = match version {
        None => current,
        Some(n) => versions.iter().find(|v| v.version == n).cloned().ok_or_else(|| {
            ServeError::NotFound(format!("model '{name}' has no version {n} (versions 1 to {})", versions.len()))
        })?,
    };
    let what = format!("model '{name}' version {}", chosen.version);
    let manifest = mesh.load_model(chosen.manifest).await.map_err(ServeError::Unavailable)?;
    if !manifest.parts.is_empty() {
        return Err(ServeError::BadInput(format!(
            "{what} is a composition of models, which {} cannot carry; export its parts one by one",
            format.name()
        )));
    }
    let pipeline = mesh.load_pipeline(manifest.pipeline).await.map_err(ServeError::Unavailable)?;
    let mut members = Vec::with_capacity(manifest.members.len());
    for (i, id) in manifest.members.iter().enumerate() {
        match mesh.load::<Member>(*id).await.map_err(ServeError::Unavailable)? {
            Member::Mlp(m) => members.push(Part::Network(m)),
            // Pruning keeps exact weights: densified, the file answers as the mesh does.
            Member::Sparse(m) => members.push(Part::Network(m.to_dense())),
            Member::Int8(_) => {
                return Err(ServeError::BadInput(format!(
                    "{what}: member {i} is int8-quantized, which the mesh serves with per-row activation \
                     quantization that {} cannot express; export its parent version instead",
                    format.name()
                )));
            }
            Member::Gbdt(g) if format == ExportFormat::Onnx => members.push(Part::Trees(g)),
            Member::Gbdt(_) => {
                return Err(ServeError::BadInput(format!(
                    "{what}: member {i} is gradient-boosted trees, which {} (a file of weight tensors) \
                     does not carry; export it as onnx",
                    format.name()
                )));
            }
        }
    }
    let model = Model { pipeline, members, combine: manifest.combine.clone() };
    let extra = provenance(name, chosen.version, chosen.manifest);
    let written = match format {
        ExportFormat::Safetensors => formats::safetensors::write(&networks(model), &extra),
        ExportFormat::Onnx => formats::onnx::write(&model, &extra),
    };
    let bytes = written.map_err(|e| ServeError::BadInput(format!("{what}: {e}")))?;
    Ok(Exported { bytes, version: chosen })
}

/// The networks of a model whose members are all networks (the loop above
/// refuses trees for safetensors).
fn networks(model: Model) -> Networks {
    let members = model
        .members
        .into_iter()
        .filter_map(|p| match p {
            Part::Network(m) => Some(m),
            Part::Trees(_) => None,
        })
        .collect();
    Networks { pipeline: model.pipeline, members, combine: model.combine }
}

/// Metadata naming where a file came from.
fn provenance(name: &str, version: u64, manifest: ContentId) -> Vec<(&'static str, String)> {
    vec![("model", name.to_owned()), ("version", version.to_string()), ("manifest", manifest.to_string())]
}
