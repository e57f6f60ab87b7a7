#!/usr/bin/env node
'use strict';
// Entry point of the CLI: the compiled TypeScript lives in dist/.
const { main } = require('../dist/src/cli.js');
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
