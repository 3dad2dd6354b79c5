#!/usr/bin/env node
/** `xenstore <mode> ...`: see tools/xenstore/cli.ts. */
import { main } from "../cli.js";

process.exitCode = await main("xenstore", process.argv.slice(2));
