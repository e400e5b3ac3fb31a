// Remediator as a sidecar container of an EXISTING Container App.
//
// READ THIS FIRST. A Container App is deployed whole: this template re-deploys the app, and
// its containers list is replaced by what the template sends. The app's own container(s) are
// therefore a required parameter, `appContainers`, sent back unchanged with Remediator
// appended; nothing is dropped silently. Take them from the running app:
//
//   az containerapp show -n <app> -g <rg> --query properties.template.containers -o json > app-containers.json
//   az deployment group what-if -g <rg> --template-file remediator-sidecar.bicep \
//     --parameters appName=<app> environmentName=<env> storageAccountName=<account> \
//                  image=<image@digest> appContainers=@app-containers.json
//   (then the same with `create` once the what-if shows only the additions you expect)
//
// A container named "remediator" in that list is replaced, so re-running with the output of
// `az containerapp show` is safe. Everything else the app has — ingress, Dapr, registries,
// secrets (read back with listSecrets), scale, volumes, init containers, identities, tags — is
// read from the running app and sent back, with Remediator's identity, volumes and (if given)
// registry added. The deployment creates a new revision of the app.
//
// Remediator starts in dry-run (`mode`). See docs/deploy.md for the whole procedure.

targetScope = 'resourceGroup'

@description('Name of the existing Container App that Remediator joins.')
param appName string

@description('Name of the Container Apps environment the app runs in (in this resource group): the audit share is registered there.')
param environmentName string

@description('The app\'s own containers exactly as they must remain (az containerapp show --query properties.template.containers). Required: the containers list is replaced whole.')
@minLength(1)
param appContainers array

@description('The Remediator image, pinned by digest: REGISTRY/remediator:VERSION@sha256:DIGEST.')
param image string

@description('Registry to pull the Remediator image from with its managed identity (which needs AcrPull there); empty for one the app can already pull from or that needs no credential.')
param registryServer string = ''

@description('Resource ID of that registry when it is an Azure Container Registry: the identity this deployment creates is given AcrPull there before the app is created, so the first revision can pull its image. Empty: grant AcrPull yourself beforehand (or use a registry that needs no credential).')
param registryResourceId string = ''

@description('dry-run (the default) decides and records but changes nothing; live acts.')
@allowed([
  'dry-run'
  'live'
])
param mode string = 'dry-run'

@description('Azure Files share holding the policy files (created if missing; upload the files before starting), mounted read-only at /etc/remediator/policies. Empty: the policies baked into the image.')
param policiesShareName string = ''

@description('Storage account (in this resource group) for the audit share and the lease container.')
param storageAccountName string

@description('Azure Files share for the audit log (created if missing), mounted read-write at /var/lib/remediator.')
param auditShareName string = take('remediator-${appName}', 63)

@description('Elect a leader on a blob lease. Every replica of the app runs a sidecar, and Remediator itself adds replicas: keep this on unless the app never runs more than one replica.')
param leaderElection bool = true

@description('Blob container for the leader lease (created if missing).')
param leaseContainerName string = take('remediator-${appName}', 63)

@description('Use /readyz as the sidecar\'s readiness probe. A replica is ready only when all its containers are, so this takes app replicas out of traffic whenever Remediator is not ready (a token, the audit share, a rejected policy reload). Off: the sidecar is ready once it serves HTTP.')
param readinessGatesApp bool = false

@description('Optional Teams/Slack incoming webhook or action-group URL for escalations; kept as a Container Apps secret.')
@secure()
param escalationWebhook string = ''

@description('Name of Remediator\'s user-assigned managed identity.')
param identityName string = '${appName}-remediator'

@description('CPU cores of the sidecar. The replica\'s total (app + sidecar) must stay a pair Container Apps accepts.')
param cpu string = '0.25'

@description('Memory of the sidecar.')
param memory string = '0.5Gi'

// The port the image's REMEDIATOR_LISTEN uses: probes and scrapes point here.
var port = 9464
var remediatorName = 'remediator'
var stateDir = '/var/lib/remediator'
var policiesDir = '/etc/remediator/policies'
var identityId = resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', identityName)
var webhookSecret = 'remediator-escalation-webhook'
var remediatorVolumeNames = [
  'remediator-state'
  'remediator-tmp'
  'remediator-policies'
]

// The audit log has exactly one writer. Each replica therefore keeps its own, under
// replicas/<replica name>/ on the share: a restarted container finds its log and its memory
// again; a new replica (a new revision, a scale-out) starts a log of its own. The pause file
// is shared, so `remediator pause` stops every replica at once.
var runScript = 'export REMEDIATOR_AUDIT_PATH="${stateDir}/replicas/$HOSTNAME/audit.jsonl"; exec remediator run'

resource existingApp 'Microsoft.App/containerApps@2024-03-01' existing = {
  name: appName
}

resource managedEnv 'Microsoft.App/managedEnvironments@2024-03-01' existing = {
  name: environmentName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource auditShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: fileService
  name: auditShareName
  properties: {
    shareQuota: 5
  }
}

resource policiesShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = if (!empty(policiesShareName)) {
  parent: fileService
  name: empty(policiesShareName) ? 'unused' : policiesShareName
  properties: {
    shareQuota: 1
  }
}

resource auditStorage 'Microsoft.App/managedEnvironments/storages@2024-03-01' = {
  parent: managedEnv
  name: take('${appName}-rem-audit', 32)
  properties: {
    azureFile: {
      accountName: storageAccountName
      accountKey: storage.listKeys().keys[0].value
      shareName: auditShare.name
      accessMode: 'ReadWrite'
    }
  }
}

resource policiesStorage 'Microsoft.App/managedEnvironments/storages@2024-03-01' = if (!empty(policiesShareName)) {
  parent: managedEnv
  name: take('${appName}-rem-policies', 32)
  properties: {
    azureFile: {
      accountName: storageAccountName
      accountKey: storage.listKeys().keys[0].value
      shareName: policiesShare.name
      accessMode: 'ReadOnly'
    }
  }
}

module remediatorIdentity 'identity-and-role.bicep' = {
  name: take('remediator-identity-${appName}', 64)
  params: {
    identityName: identityName
    location: existingApp.location
    leaderElection: leaderElection
    storageAccountName: storageAccountName
    leaseContainerName: leaseContainerName
  }
}

// AcrPull on the registry, before the app: its first revision pulls with this identity
module registryPull 'acr-pull.bicep' = if (!empty(registryResourceId)) {
  name: take('remediator-acrpull-${appName}', 64)
  scope: resourceGroup(split(registryResourceId, '/')[2], split(registryResourceId, '/')[4])
  params: {
    registryName: last(split(registryResourceId, '/'))
    principalId: remediatorIdentity.outputs.principalId
  }
}

// ---- Remediator's container -------------------------------------------------------------

var leaderEnv = leaderElection ? [
  {
    name: 'REMEDIATOR_LEADER_ELECTION'
    value: string({
      enabled: true
      accountUrl: remediatorIdentity.outputs.leaseAccountUrl
      container: leaseContainerName
    })
  }
] : []

var webhookEnv = empty(escalationWebhook) ? [] : [
  {
    name: 'REMEDIATOR_ESCALATION_WEBHOOK'
    secretRef: webhookSecret
  }
]

var env = concat([
  {
    name: 'REMEDIATOR_MODE'
    value: mode
  }
  {
    name: 'REMEDIATOR_CREDENTIAL'
    value: 'managedIdentity'
  }
  {
    name: 'REMEDIATOR_IDENTITY_CLIENT_ID'
    value: remediatorIdentity.outputs.clientId
  }
  {
    name: 'REMEDIATOR_LOG_FORMAT'
    value: 'json'
  }
  {
    name: 'REMEDIATOR_LISTEN'
    value: '0.0.0.0:${port}'
  }
  {
    name: 'REMEDIATOR_POLICIES'
    value: policiesDir
  }
  {
    name: 'REMEDIATOR_PAUSE_FILE'
    value: '${stateDir}/remediator.pause'
  }
], leaderEnv, webhookEnv)

// Readiness: /readyz only if asked (see readinessGatesApp); otherwise ready once listening.
var readinessProbe = readinessGatesApp ? {
  type: 'Readiness'
  httpGet: {
    path: '/readyz'
    port: port
    scheme: 'HTTP'
  }
  periodSeconds: 15
  timeoutSeconds: 12
  failureThreshold: 3
} : {
  type: 'Readiness'
  tcpSocket: {
    port: port
  }
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 3
}

var probes = [
  {
    // Opening the audit log verifies its whole hash chain first: allow it time.
    type: 'Startup'
    httpGet: {
      path: '/healthz'
      port: port
      scheme: 'HTTP'
    }
    initialDelaySeconds: 5
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 10
  }
  {
    // /healthz: every target's loop ticked within its own interval. A stalled loop restarts
    // this container only, never the app's.
    type: 'Liveness'
    httpGet: {
      path: '/healthz'
      port: port
      scheme: 'HTTP'
    }
    periodSeconds: 15
    timeoutSeconds: 5
    failureThreshold: 4
  }
  readinessProbe
]

var policiesMount = empty(policiesShareName) ? [] : [
  {
    volumeName: 'remediator-policies'
    mountPath: policiesDir
  }
]

var remediatorContainer = {
  name: remediatorName
  image: image
  command: [
    '/bin/sh'
    '-c'
    runScript
  ]
  env: env
  resources: {
    cpu: json(cpu)
    memory: memory
  }
  probes: probes
  volumeMounts: concat([
    {
      volumeName: 'remediator-state'
      mountPath: stateDir
    }
    {
      volumeName: 'remediator-tmp'
      mountPath: '/tmp'
    }
  ], policiesMount)
}

var policiesVolume = empty(policiesShareName) ? [] : [
  {
    name: 'remediator-policies'
    storageType: 'AzureFile'
    storageName: policiesStorage.name
    mountOptions: 'uid=0,gid=10001,dir_mode=0750,file_mode=0640'
  }
]

var remediatorVolumes = concat([
  {
    name: 'remediator-state'
    storageType: 'AzureFile'
    storageName: auditStorage.name
    // The image runs as uid/gid 10001; only Remediator reads and writes this share.
    mountOptions: 'uid=10001,gid=10001,dir_mode=0750,file_mode=0640'
  }
  {
    name: 'remediator-tmp'
    storageType: 'EmptyDir'
  }
], policiesVolume)

// ---- What the app has, sent back -----------------------------------------------------------

// Its own containers (a previous Remediator sidecar in the list is replaced, not doubled)...
var ownContainers = filter(appContainers, c => c.name != remediatorName)

// ...its volumes, init containers, scale, secrets, registries and identities.
var existingTemplate = existingApp.properties.template
var existingConfiguration = existingApp.properties.configuration
var ownVolumes = filter(existingTemplate.?volumes ?? [], v => !contains(remediatorVolumeNames, v.name))

// A GET returns secret names without values: listSecrets gives the values back, so the
// re-deployment keeps every secret (Key Vault references stay references).
var ownSecrets = map(
  filter(existingApp.listSecrets().value, s => s.name != webhookSecret),
  s => empty(s.?keyVaultUrl ?? '') ? {
    name: s.name
    value: s.value
  } : {
    name: s.name
    keyVaultUrl: s.keyVaultUrl
    identity: s.identity
  }
)
var webhookSecrets = empty(escalationWebhook) ? [] : [
  {
    name: webhookSecret
    value: escalationWebhook
  }
]

var ownRegistries = existingConfiguration.?registries ?? []
var registryKnown = contains(map(ownRegistries, r => toLower(r.server)), toLower(registryServer))
var registries = empty(registryServer) || registryKnown ? ownRegistries : concat(ownRegistries, [
  {
    server: registryServer
    identity: identityId
  }
])

var ownIdentityType = existingApp.?identity.?type ?? 'None'
var ownUserIdentities = filter(
  items(existingApp.?identity.?userAssignedIdentities ?? {}),
  e => toLower(e.key) != toLower(identityId)
)
var userIdentities = union(toObject(ownUserIdentities, e => e.key, e => {}), {
  '${identityId}': {}
})

// The app is written by a module: a template that reads a resource (existingApp, above) and
// also deploys it would make it depend on itself.
module app 'sidecar-app.bicep' = {
  name: take('remediator-sidecar-${appName}', 64)
  params: {
    name: appName
    location: existingApp.location
    tags: existingApp.?tags ?? {}
    identity: {
      type: contains(ownIdentityType, 'SystemAssigned') ? 'SystemAssigned,UserAssigned' : 'UserAssigned'
      userAssignedIdentities: userIdentities
    }
    managedEnvironmentId: managedEnv.id
    workloadProfileName: existingApp.properties.?workloadProfileName ?? ''
    configuration: union(existingConfiguration, {
      registries: registries
    })
    secrets: {
      items: concat(ownSecrets, webhookSecrets)
    }
    template: {
      // revisionSuffix is left out on purpose: the new revision gets a fresh one.
      initContainers: existingTemplate.?initContainers
      containers: concat(ownContainers, [
        remediatorContainer
      ])
      scale: existingTemplate.?scale
      volumes: concat(ownVolumes, remediatorVolumes)
      serviceBinds: existingTemplate.?serviceBinds
      terminationGracePeriodSeconds: existingTemplate.?terminationGracePeriodSeconds
    }
  }
  dependsOn: [
    remediatorIdentity
    registryPull
    auditStorage
    policiesStorage
  ]
}

output identityClientId string = remediatorIdentity.outputs.clientId
output identityPrincipalId string = remediatorIdentity.outputs.principalId
output roleDefinitionId string = remediatorIdentity.outputs.roleDefinitionId
output containers array = app.outputs.containerNames
