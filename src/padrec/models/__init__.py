"""Neural building blocks: backbones, item representations, experts and gates."""
