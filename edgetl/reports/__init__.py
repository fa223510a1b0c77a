"""Reports over finished runs (transfer: fine-tuned vs scratch vs linear probe, distillation). Top of the library."""
