#!/usr/bin/env node
/** `xenstore-ls`: see tools/xenstore/cli.ts. */
import { main } from "../cli.js";

process.exitCode = await main("xenstore-ls", process.argv.slice(2));
