/**
 * The virt component: libvirt through virsh, and qemu-img/qemu-nbd for offline images.
 * Everything takes a `Virsh` (which carries the URI and the logger) as its first argument.
 */
export * from './agent.ts';
export * from './backup.ts';
export * from './checkpoints.ts';
export * from './errors.ts';
export * from './host-check.ts';
export * from './lifecycle.ts';
export * from './networks.ts';
export * from './qemu-img.ts';
export * from './qemu-nbd.ts';
export * from './secrets.ts';
export * from './servers.ts';
export * from './virsh.ts';
