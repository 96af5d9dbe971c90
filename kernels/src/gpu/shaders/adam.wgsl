// One Adam step in place, with coupled L2 (l2 * param added to the gradient)
// and subnormal moments flushed to zero, as the CPU backend does.

struct Params {
    len: u32,
    learning_rate: f32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    inv_correction1: f32,
    inv_correction2: f32,
    l2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

const MIN_NORMAL: f32 = 1.17549435e-38;

fn flush(x: f32) -> f32 {
    return select(x, 0.0, abs(x) < MIN_NORMAL);
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= p.len) {
        return;
    }
    let g = grad[i] + p.l2 * param[i];
    let mi = flush(p.beta1 * m[i] + (1.0 - p.beta1) * g);
    let vi = flush(p.beta2 * v[i] + (1.0 - p.beta2) * g * g);
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] - p.learning_rate * (mi * p.inv_correction1) / (sqrt(vi * p.inv_correction2) + p.epsilon);
}
