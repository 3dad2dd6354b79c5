#!/usr/bin/env node
/** `xenstore-list`: see tools/xenstore/cli.ts. */
import { main } from "../cli.js";

process.exitCode = await main("xenstore-list", process.argv.slice(2));
