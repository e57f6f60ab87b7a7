// Synthetic photographs for tests and demos (`stepscope data make`): sizes
// around 500x375 (ImageNet's most common), content with natural-image
// statistics rather than flat colours: a 1/f amplitude spectrum (octaves of
// smooth noise, amplitude proportional to wavelength), soft-edged objects,
// hard edges and fine texture, with colour channels correlated through a
// shared luminance. Deterministic in (seed, image index); the class sets the
// palette, so a model can learn something from it.
#pragma once
#include <cstdint>

#include "data/jpeg_codec.h"

namespace stepscope {

RgbImage syntheticImage(uint64_t seed, uint64_t index, int label, int classes);

}  // namespace stepscope
