"""The one table of logical-axis rules: logical names on parameters and activations -> mesh axes.

Parameters and activations are annotated with logical names (batch, length,
embed, mlp, heads, kv, vocab); `RULES` maps each name to mesh axes. Changing a
parallelism strategy means changing this table or the mesh shape, nothing else.
"""
from __future__ import annotations

import contextlib

import flax.linen as nn
import jax
from jax.sharding import Mesh

# logical name -> mesh axes. Batch is split over data and fsdp (FSDP is data
# parallel with sharded parameters); `embed` on parameters is split over fsdp;
# heads and the MLP hidden are split over tensor (Megatron-style).
RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("kv", None),
    # the vocabulary stays whole: character vocabularies (65) rarely divide the
    # tensor axis, and the embedding is already split over fsdp on `embed`
    ("vocab", None),
    ("act_vocab", None),
    ("stack", None),
    ("layers", None),
)


def logical_to_sharding(logical_tree, mesh: Mesh):
    """Map a pytree of logical PartitionSpecs to NamedShardings on `mesh`."""
    return nn.logical_to_mesh_sharding(logical_tree, mesh, RULES)


@contextlib.contextmanager
def activation_rules(mesh: Mesh):
    """Context under which the model's activation constraints take effect."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
        yield


def constrain(x, logical_axes):
    """Sharding constraint by logical names; a no-op outside `activation_rules`."""
    return nn.with_logical_constraint(x, logical_axes)
