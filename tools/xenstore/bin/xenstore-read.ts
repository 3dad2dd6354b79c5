#!/usr/bin/env node
/** `xenstore-read`: see tools/xenstore/cli.ts. */
import { main } from "../cli.js";

process.exitCode = await main("xenstore-read", process.argv.slice(2));
