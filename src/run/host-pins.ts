// The data pipeline's batch buffers as the CUDA step copies them to the
// device: a view of each ring slot's host memory (no copy), page-locked once
// per slot with the CUDA addon's HostPin, so each iteration's copy is a DMA
// (a pageable 19 MB copy goes through the driver's staging at a fraction of
// the link's speed). Released before the pipeline frees its buffers.
import type { Buffer } from '../../binding';
import type { HostPin } from '../../binding-cuda';
import type { CudaAddon } from '../native-cuda';

/**
 * Below this a batch is not pinned: the CPU addon aligns smaller blocks to 64 bytes, so two ring slots may share a
 * page and the second registration would be refused; and such a copy is short anyway.
 */
export const MIN_PINNED_BYTES = 1 << 20;

export class HostPins {
  /** Each slot's view, and its pin (none below MIN_PINNED_BYTES). */
  private readonly slots = new Map<Buffer, { view: Float32Array; pin?: HostPin }>();

  constructor(private readonly cuda: CudaAddon) {}

  /** The buffer's memory, pinned at its first use (a refused pin leaves it pageable: still copied, slower). */
  view(buffer: Buffer): Float32Array {
    let slot = this.slots.get(buffer);
    if (!slot) {
      const view = buffer.view();
      slot = { view, pin: view.byteLength < MIN_PINNED_BYTES ? undefined : new this.cuda.HostPin(view) };
      this.slots.set(buffer, slot);
    }
    return slot.view;
  }

  /** How many slots are page-locked, and why the first refused one was not. */
  status(): { pinned: number; slots: number; reason?: string } {
    const pins = [...this.slots.values()].map((s) => s.pin);
    const refused = pins.find((p) => !p?.pinned);
    const reason = refused ? refused.reason : pins.includes(undefined) ? `batches under ${MIN_PINNED_BYTES} bytes are not pinned` : undefined;
    return { pinned: pins.filter((p) => p?.pinned).length, slots: pins.length, reason };
  }

  release(): void {
    for (const { pin } of this.slots.values()) pin?.release();
    this.slots.clear();
  }
}
