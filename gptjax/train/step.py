"""Pure training and evaluation steps, and sharded state initialisation.

`train_step(state, batch)` is a module-level pure function of the train state and
a batch; `compile_steps` wraps it once in `jax.jit` with explicit in/out
shardings over the mesh and donates the state.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gptjax.model.build import build_model
from gptjax.parallel import mesh as mesh_lib, rules
from gptjax.train import lora as lora_lib


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def cross_entropy(logits_BxLxV, targets_BxL, mask_BxL, smoothing: float = 0.0):
    """Summed token cross-entropy over the mask, and the number of tokens counted; with `smoothing` e,
    against (1 - e) * one-hot + e / V, i.e. (1 - e) * CE + e * the mean over the vocabulary of -log p."""
    if smoothing:
        # -log p = lse - z, so both terms come from one logsumexp and never hold log p itself, a
        # B x L x V array whose gradient made a smoothed step 1.5x a plain one on the CPU (optax smooths
        # one-hot labels, a B x L x V array too)
        z = logits_BxLxV.astype(jnp.float32)
        z_target = jnp.take_along_axis(z, targets_BxL[..., None], axis=-1)[..., 0]
        losses = jax.nn.logsumexp(z, axis=-1) - (1.0 - smoothing) * z_target - smoothing * jnp.mean(z, axis=-1)
    else:
        losses = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)
    mask = mask_BxL.astype(jnp.float32)
    return jnp.sum(losses * mask), jnp.sum(mask)


def chunked_cross_entropy(x_BxLxE, w_ExV, targets_BxL, mask_BxL, chunk: int, smoothing: float = 0.0):
    """`cross_entropy` of logits x @ w computed `chunk` positions at a time.

    A scan over sequence chunks with a rematerialised body: the forward and the
    backward pass each hold one B x chunk x V block of logits, never B x L x V.
    The batch axis is untouched, so it stays sharded over the mesh.
    """
    b, l, e = x_BxLxE.shape
    n = -(-l // chunk)
    pad = n * chunk - l
    if pad:
        x_BxLxE = jnp.pad(x_BxLxE, ((0, 0), (0, pad), (0, 0)))
        targets_BxL = jnp.pad(targets_BxL, ((0, 0), (0, pad)))
        mask_BxL = jnp.pad(mask_BxL, ((0, 0), (0, pad)))
    split = lambda a: jnp.swapaxes(a.reshape(b, n, chunk, *a.shape[2:]), 0, 1)  # noqa: E731

    @jax.checkpoint
    def piece(x_BxCxE, t_BxC, m_BxC):
        return head_cross_entropy(x_BxCxE, w_ExV, t_BxC, m_BxC, smoothing=smoothing)

    def body(carry, xs):
        total, count = piece(*xs)
        return (carry[0] + total, carry[1] + count), None

    (total, count), _ = jax.lax.scan(body, (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)),
                                     (split(x_BxLxE), split(targets_BxL), split(mask_BxL)))
    return total, count


def head_cross_entropy(x_BxLxE, w_ExV, targets_BxL, mask_BxL, chunk: int = 0, smoothing: float = 0.0):
    """`cross_entropy` of logits x @ w, `chunk` positions at a time when chunk > 0."""
    if chunk:
        return chunked_cross_entropy(x_BxLxE, w_ExV, targets_BxL, mask_BxL, chunk, smoothing)
    logits = jnp.einsum("ble,ev->blv", x_BxLxE, w_ExV).astype(jnp.float32)
    return cross_entropy(logits, targets_BxL, mask_BxL, smoothing)


def capacity_cross_entropy(x_BxLxE, w_ExV, targets_BxL, mask_BxL, capacity: int, chunk: int = 0,
                           smoothing: float = 0.0):
    """`head_cross_entropy` with logits made only where the loss mask is set, at most `capacity`
    positions of each row.

    When the loss covers a share of each row (a task's target after its prompt), the output layer,
    a B x L x E by E x V matmul that is most of a small model's step, need not run on the rest.
    Each row's masked positions are moved to its front (a stable sort: the batch axis stays as it is,
    so it stays sharded) and the first `capacity` kept. A batch with a row of more masked positions
    than that takes the whole-row path instead, so the loss and its gradients are always exact.
    """
    l = x_BxLxE.shape[1]
    if capacity >= l:
        return head_cross_entropy(x_BxLxE, w_ExV, targets_BxL, mask_BxL, chunk, smoothing)
    order_BxC = jnp.argsort(mask_BxL == 0, axis=1, stable=True)[:, :capacity]

    def take(a):  # the kept positions of each row, of a B x L or B x L x E array
        return jnp.take_along_axis(a, order_BxC if a.ndim == 2 else order_BxC[..., None], axis=1)
    fits = jnp.max(jnp.sum(mask_BxL != 0, axis=1)) <= capacity
    return jax.lax.cond(
        fits,
        lambda x, w: head_cross_entropy(take(x), w, take(targets_BxL), take(mask_BxL), chunk, smoothing),
        lambda x, w: head_cross_entropy(x, w, targets_BxL, mask_BxL, chunk, smoothing),
        x_BxLxE, w_ExV)


def model_cross_entropy(params, batch, model: nn.Module, rngs=None, smoothing: float = 0.0):
    """Summed loss and token count of `model` on `batch`, through chunked logits, or logits at the
    loss's positions only, when the spec asks."""
    spec = getattr(model, "spec", None)
    chunk, share = getattr(spec, "loss_chunk", 0), getattr(spec, "loss_capacity", 1.0)
    if chunk or share < 1.0:
        x, w = model.apply({"params": params}, batch, method="features_from_batch", rngs=rngs)
        capacity = math.ceil(share * x.shape[1])
        return capacity_cross_entropy(x, w, batch["targets"], batch["loss_mask"], capacity, chunk, smoothing)
    logits = model.apply({"params": params}, batch, method="from_batch", rngs=rngs)
    return cross_entropy(logits, batch["targets"], batch["loss_mask"], smoothing)


def kl_divergence(teacher_logits, student_logits, mask, temperature: float):
    """Summed KL(teacher || student) over the mask, both distributions softened by `temperature`."""
    t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
    s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    return jnp.sum(jnp.sum(jnp.exp(t) * (t - s), axis=-1) * mask.astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class Distill:
    """The frozen teacher's network and the mix of its soft targets with the data's (train.distill_*)."""

    model: nn.Module
    temperature: float
    alpha: float


def distill_loss(params, teacher_params, batch, model, distill: Distill, rngs, smoothing: float = 0.0):
    """alpha * T^2 * KL(teacher || student at T) + (1 - alpha) * cross-entropy, per target token
    (T^2 keeps the soft targets' gradients on the scale of the hard ones, as Hinton et al. 2015)."""
    logits = model.apply({"params": params}, batch, method="from_batch", rngs=rngs)
    teacher_logits = jax.lax.stop_gradient(
        distill.model.apply({"params": teacher_params}, batch, method="from_batch"))
    ce, count = cross_entropy(logits, batch["targets"], batch["loss_mask"], smoothing)
    kl = kl_divergence(teacher_logits, logits, batch["loss_mask"], distill.temperature)
    n, t, a = jnp.maximum(count, 1.0), distill.temperature, distill.alpha
    return a * t * t * kl / n + (1.0 - a) * ce / n, (count, kl / n)


def loss_fn(params, batch, model: nn.Module, rng, lora=None, smoothing: float = 0.0):
    """Mean loss per target token, and the token count. With `lora` (the optimizer config) the
    adapters are folded into their kernels first."""
    if lora is not None:
        params = lora_lib.merge(params, lora)
    total, count = model_cross_entropy(params, batch, model, {"dropout": rng}, smoothing)
    return total / jnp.maximum(count, 1.0), count


def objective(params, batch, rng, *, model, lora=None, distill=None, teacher_params=None, smoothing=0.0):
    """What the train step differentiates: the loss, and (token count, mean distillation KL); with
    `distill` the teacher's soft targets join the data's."""
    if distill is None:
        loss, count = loss_fn(params, batch, model, rng, lora, smoothing)
        return loss, (count, jnp.zeros((), jnp.float32))
    if lora is not None:
        params = lora_lib.merge(params, lora)
    return distill_loss(params, teacher_params, batch, model, distill, {"dropout": rng}, smoothing)


def train_step(state: TrainState, batch, teacher_params=None, *, model, tx, schedule, seed: int, grad_accum: int,
               lora=None, distill=None, smoothing: float = 0.0):
    """One optimizer update; with grad_accum > 1 the batch is split into micro-batches. `smoothing`:
    label smoothing of the training loss (the reported `loss` is the smoothed one)."""
    rng = jax.random.fold_in(jax.random.key(seed), state.step)
    grad_fn = jax.value_and_grad(functools.partial(objective, model=model, lora=lora, distill=distill,
                                                   teacher_params=teacher_params, smoothing=smoothing), has_aux=True)
    if grad_accum == 1:
        (loss, (_, kl)), grads = grad_fn(state.params, batch, rng=rng)
    else:
        micro = jax.tree.map(lambda x: x.reshape(grad_accum, -1, *x.shape[1:]), batch)

        def body(carry, i_and_mb):
            i, mb = i_and_mb
            (l, (c, k)), g = grad_fn(state.params, mb, rng=jax.random.fold_in(rng, i))
            # weight each micro-batch by its token count so the result equals the big batch
            g_sum, l_sum, k_sum, c_sum = carry
            return (jax.tree.map(lambda a, b: a + b * c, g_sum, g), l_sum + l * c, k_sum + k * c, c_sum + c), None

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        (g_sum, l_sum, k_sum, c_sum), _ = jax.lax.scan(body, (zeros, 0.0, 0.0, 0.0), (jnp.arange(grad_accum), micro))
        grads = jax.tree.map(lambda g: g / jnp.maximum(c_sum, 1.0), g_sum)
        loss, kl = l_sum / jnp.maximum(c_sum, 1.0), k_sum / jnp.maximum(c_sum, 1.0)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # a non-finite step leaves parameters and optimizer state as they were; the
    # host decides whether to stop (train.nonfinite) and names the culprits
    grads_finite = jax.tree.map(lambda g: jnp.all(jnp.isfinite(g)), grads)
    finite = jnp.isfinite(loss) & jnp.all(jnp.stack(jax.tree.leaves(grads_finite)))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
    metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(state.step), "finite": finite,
               "grads_finite": grads_finite}
    if distill is not None:
        metrics["distill_kl"] = kl
    return TrainState(step=state.step + 1, params=keep(params, state.params),
                      opt_state=keep(opt_state, state.opt_state)), metrics


def eval_step(params, batch, *, model, lora=None):
    return model_cross_entropy(lora_lib.merge(params, lora) if lora is not None else params, batch, model)


# ------------------------------------------------------------------ initialisation and compilation

@dataclasses.dataclass
class Compiled:
    """The jitted functions of one run and the shardings they were built with."""

    train_step: Callable
    eval_step: Callable
    state_sharding: Any
    batch_sharding: Any
    abstract_state: Any
    logical_specs: Any
    init: Callable


def _init_fn(model, rng, example, lora=None):
    params = model.init({"params": rng}, example, method="from_batch")["params"]
    return lora_lib.add_adapters(params, lora, rng) if lora is not None else params


def lora_config(exp):
    """The optimizer section when the run trains LoRA adapters, else None."""
    return exp.optimizer if exp.optimizer.lora_rank else None


def init_example(example_batch):
    """A one-row stand-in for a batch, enough to create the parameters."""
    return {k: jnp.zeros((1, *v.shape[1:]), v.dtype) for k, v in example_batch.items()}


def make_state_fns(exp, model_spec, tx, mesh, example_batch):
    """Logical specs, shardings and an init function producing a sharded TrainState."""
    model, lora = build_model(exp, model_spec), lora_config(exp)
    boxed = jax.eval_shape(lambda rng: _init_fn(model, rng, init_example(example_batch), lora), jax.random.key(0))
    logical_params = nn.get_partition_spec(boxed)

    def init(rng):
        params = nn.meta.unbox(_init_fn(model, rng, init_example(example_batch), lora))
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    abstract = jax.eval_shape(init, jax.random.key(0))
    # optimizer state mirrors the parameters: moments take their parameter's spec
    param_sharding = rules.logical_to_sharding(logical_params, mesh)
    repl = mesh_lib.replicated(mesh)
    opt_sharding = optax.tree_map_params(tx, lambda _, s: s, abstract.opt_state, param_sharding,
                                         transform_non_params=lambda _: repl,
                                         is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding))
    state_sharding = TrainState(step=repl, params=param_sharding, opt_state=opt_sharding)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            abstract, state_sharding)
    return init, state_sharding, abstract, logical_params


@dataclasses.dataclass
class Teacher:
    """A distillation teacher: its network and mix (static), its parameters and their shardings."""

    distill: Distill
    params: Any
    sharding: Any


def compile_steps(exp, model_spec, tx, schedule, mesh, example_batch, teacher: Teacher | None = None) -> Compiled:
    """Jit and compile init, train and eval steps for batches shaped like `example_batch`. A `teacher`'s
    parameters enter the train step as an argument, laid out on the same mesh as the student's."""
    init, state_sharding, abstract, logical = make_state_fns(exp, model_spec, tx, mesh, example_batch)
    batch_sharding = {k: mesh_lib.batch_sharding(mesh, np.ndim(v)) for k, v in example_batch.items()}
    train_model = build_model(exp, model_spec, deterministic=model_spec.dropout == 0.0)
    eval_model, lora = build_model(exp, model_spec), lora_config(exp)
    repl = mesh_lib.replicated(mesh)
    step = jax.jit(functools.partial(train_step, model=train_model, tx=tx, schedule=schedule,
                                     seed=exp.train.seed, grad_accum=exp.optimizer.grad_accum, lora=lora,
                                     distill=teacher.distill if teacher else None,
                                     smoothing=exp.train.label_smoothing),
                   in_shardings=(state_sharding, batch_sharding, *((teacher.sharding,) if teacher else ())),
                   out_shardings=(state_sharding, repl), donate_argnums=(0,))
    evaluate = jax.jit(functools.partial(eval_step, model=eval_model, lora=lora),
                       in_shardings=(state_sharding.params, batch_sharding), out_shardings=(repl, repl))
    init = jax.jit(init, out_shardings=state_sharding)
    # compile ahead of time under the mesh and logical rules, so activation
    # constraints take effect and the compile cost is paid (and timed) once
    abstract_batch = {k: jax.ShapeDtypeStruct((exp.train.batch_size, *np.shape(v)[1:]), np.asarray(v).dtype,
                                              sharding=batch_sharding[k]) for k, v in example_batch.items()}
    abstract_teacher = () if teacher is None else (jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), teacher.params, teacher.sharding),)
    # (initialisation is traced outside the rules: DenseGeneral initialises flat
    # kernels, which its logical annotations would not fit)
    init = init.lower(jax.ShapeDtypeStruct((), jax.random.key(0).dtype)).compile()
    with rules.activation_rules(mesh):
        step = step.lower(abstract, abstract_batch, *abstract_teacher).compile()
        evaluate = evaluate.lower(abstract.params, abstract_batch).compile()
    if teacher is not None:
        step = functools.partial(_with_teacher, step, teacher.params)
    return Compiled(step, evaluate, state_sharding, batch_sharding, abstract, logical, init)


def _with_teacher(step, teacher_params, state, batch):
    return step(state, batch, teacher_params)
