// The output delta of each loss and each row's loss, one invocation per row:
// delta = d(mean loss)/d(outputs), row_losses[offset + row] = the row's loss.
// Outputs are probabilities for cross-entropy, values otherwise.

struct Params {
    rows: u32,
    cols: u32,
    // 0 softmax cross-entropy, 1 squared error, 2 Huber.
    loss: u32,
    offset: u32,
    huber: f32,
    // 1 / rows, computed on the host as the CPU backend does.
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> outputs: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read_write> delta: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_losses: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = gid.y * groups.x * 64u + gid.x;
    if (row >= p.rows) {
        return;
    }
    var total = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        let at = row * p.cols + j;
        let o = outputs[at];
        let t = targets[at];
        let e = o - t;
        switch p.loss {
            case 0u: {
                delta[at] = e * p.scale;
                if (t > 0.0) {
                    total = total - t * log(max(o, 1e-30));
                }
            }
            case 1u: {
                delta[at] = e * p.scale;
                total = total + 0.5 * e * e;
            }
            default: {
                delta[at] = clamp(e, -p.huber, p.huber) * p.scale;
                let a = abs(e);
                total = total + select(p.huber * (a - 0.5 * p.huber), 0.5 * a * a, a <= p.huber);
            }
        }
    }
    row_losses[p.offset + row] = total;
}
