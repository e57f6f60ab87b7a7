// The stepscope library: what the CLI uses, for programs of your own.
export { addon } from './native';
export { resnet50Convs, shapeClass, describeShape, convFlops, type ConvLayer, type ResNetScale } from './model/resnet50';
export * from './ops/conv';
export { benchConv, timeConvOnce, uniqueShapes, type ConvBenchOptions, type ConvBenchRow } from './bench/conv-bench';
export { summarize, type Summary } from './bench/stats';
export { doctor, formatDoctor, type DoctorReport } from './doctor';
export { listVariants, availableConvVariants } from './variants';
export { UsageError, DataError } from './errors';
export { scanImageFolder, type ImageFolder } from './data/imagefolder';
export { batchSamples, epochPermutation } from './data/sampler';
export { DataPipeline, openLoader, type DataOptions, type DataKind } from './data/pipeline';
export { makeImageFolder } from './data/make';
export { packImageFolder, type PackSummary } from './data/pack';
export { benchData, type DataBenchRow } from './bench/data-bench';
export { cudaStatus, cudaAddon, cudaAddonIfLoaded, cudaTimelineDrain, type CudaStatus } from './native-cuda';
export { resolveBackend, type Backend, type BackendChoice } from './backend';
export { benchConvCuda, type CudaConvBenchOptions } from './bench/conv-bench-cuda';
export { checkCudaConvVariants, cudaConvTolerance, type CudaCheck, type Precision } from './ops/conv-cuda';
