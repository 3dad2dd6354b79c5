#!/usr/bin/env node
/** `xenstore-exists`: see tools/xenstore/cli.ts. */
import { main } from "../cli.js";

process.exitCode = await main("xenstore-exists", process.argv.slice(2));
