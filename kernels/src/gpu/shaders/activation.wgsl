// Element-wise activations. `bias_activation`: z = f(z + bias[col]) over a
// rows x cols matrix; `activation_grad`: delta *= f'(y) where y = f(z) was
// kept from the forward pass. One invocation per element; large tensors use
// a second dispatch dimension (65535 workgroups per dimension at most).

struct Params {
    rows: u32,
    cols: u32,
    // 0 identity, 1 relu, 2 tanh.
    activation: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> target_values: array<f32>;
@group(0) @binding(2) var<storage, read> other: array<f32>;

fn element(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 256u + gid.x;
}

@compute @workgroup_size(256)
fn bias_activation(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if (i >= p.rows * p.cols) {
        return;
    }
    let v = target_values[i] + other[i % p.cols];
    switch p.activation {
        case 1u: {
            target_values[i] = max(v, 0.0);
        }
        case 2u: {
            // tanh(15) is 1 in f32; clamping keeps exp-based tanh finite.
            target_values[i] = tanh(clamp(v, -15.0, 15.0));
        }
        default: {
            target_values[i] = v;
        }
    }
}

@compute @workgroup_size(256)
fn activation_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = element(gid, groups);
    if (i >= p.rows * p.cols) {
        return;
    }
    let y = other[i];
    switch p.activation {
        case 1u: {
            if (y <= 0.0) {
                target_values[i] = 0.0;
            }
        }
        case 2u: {
            target_values[i] = target_values[i] * (1.0 - y * y);
        }
        default: {}
    }
}
