"""libvirt qemu hook that guards and prepares accelerator devices."""
