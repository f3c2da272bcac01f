/**
 * Page-aligned buffers, for I/O that bypasses the page cache (O_DIRECT needs the memory address,
 * the file offset and the length aligned to the device's logical block size; open(2),
 * "O_DIRECT"). Node cannot align a Buffer, but the memory of a WebAssembly.Memory is allocated by
 * whole pages (mmap'ed 64 KiB wasm pages), so buffers cut from one at multiples of 4096 are
 * aligned. The memories are few and long-lived (pools, scratch buffers).
 */

/** Offset, length and memory alignment for direct I/O (covers 512- and 4096-byte devices). */
export const DIRECT_ALIGN = 4096;
const WASM_PAGE = 64 * 1024;

const alignedMemory = new WeakSet<ArrayBufferLike>();

/** The one WebAssembly API used here (the project's TypeScript libs do not declare WebAssembly). */
const WasmMemory = (
  globalThis as unknown as {
    WebAssembly: {
      Memory: new (d: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer };
    };
  }
).WebAssembly.Memory;

/**
 * A zero-filled buffer of `bytes` whose memory address is page-aligned, or an ordinary buffer
 * where V8 cannot reserve wasm memory (each reserves guard address space, so a tight `ulimit -v`
 * refuses it); callers check isAlignedMemory() and go through the page cache then.
 */
export function alignedBuffer(bytes: number): Buffer {
  const pages = Math.max(1, Math.ceil(bytes / WASM_PAGE));
  let mem: { readonly buffer: ArrayBuffer };
  try {
    mem = new WasmMemory({ initial: pages, maximum: pages });
  } catch (e) {
    if (e instanceof RangeError) return Buffer.alloc(bytes);
    throw e;
  }
  alignedMemory.add(mem.buffer);
  return Buffer.from(mem.buffer, 0, bytes);
}

/** True when `buf` starts at an aligned address: cut from alignedBuffer() at an aligned offset. */
export function isAlignedMemory(buf: Buffer): boolean {
  return alignedMemory.has(buf.buffer) && buf.byteOffset % DIRECT_ALIGN === 0;
}

export function alignDown(n: number): number {
  return n - (n % DIRECT_ALIGN);
}

export function alignUp(n: number): number {
  return alignDown(n + DIRECT_ALIGN - 1);
}
